// The SentencePiece tokenizer of Mistral and Mixtral (tokenizer.model): encoding adds BOS and
// no EOS; decoding drops special tokens. libsentencepiece is reached through a small shim
// library loaded in a private symbol scope (see sentencepiece_shim.cc for why).
#pragma once

#include <memory>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace moe {

// The offset of the first byte that breaks UTF-8 (RFC 3629: no overlong forms, surrogates or
// code points past U+10FFFF; a character cut short at the end counts at its first byte), or
// -1 when `text` is valid.
int64_t FirstInvalidUtf8(std::string_view text);
// InvalidArgument naming the first byte that breaks UTF-8, or Ok.
Status CheckUtf8(std::string_view text);

class Tokenizer {
 public:
  static StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& path);
  // Where a model directory keeps its tokenizer: MODEL_DIR/tokenizer.model.
  static std::string PathForModel(const std::string& model_dir);
  // MODEL_DIR/tokenizer.model, or null when the directory has none (the model then runs on
  // token ids alone); an error when it has more pieces than the model's `vocab`.
  static StatusOr<std::unique_ptr<Tokenizer>> LoadForModel(const std::string& model_dir,
                                                           int vocab);
  ~Tokenizer();

  // Error (InvalidArgument, naming the byte) when `text` is not valid UTF-8.
  StatusOr<std::vector<int>> Encode(const std::string& text, bool add_bos = true) const;
  std::string Decode(const std::vector<int>& ids) const;
  int vocab_size() const { return vocab_; }
  int bos_id() const { return bos_; }
  int eos_id() const { return eos_; }

  struct Api;  // the shim's entry points

 private:
  Tokenizer() = default;
  const Api* api_ = nullptr;
  void* sp_ = nullptr;
  int vocab_ = 0, bos_ = 1, eos_ = 2;
  std::vector<bool> control_;  // [vocab] special tokens, dropped by Decode
};

}  // namespace moe
