// The SentencePiece tokenizer of Mistral and Mixtral (tokenizer.model): encoding adds BOS and
// no EOS; decoding drops special tokens.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace moe {

class Tokenizer {
 public:
  static StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& path);
  ~Tokenizer();

  std::vector<int> Encode(const std::string& text, bool add_bos = true) const;
  std::string Decode(const std::vector<int>& ids) const;
  int vocab_size() const;
  int bos_id() const;
  int eos_id() const;

 private:
  Tokenizer() = default;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

}  // namespace moe
