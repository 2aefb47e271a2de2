// Turns a growing list of generated token ids into text deltas: only whole UTF-8 characters,
// never text that could still become a stop string, and the cut at a stop string.
#pragma once

#include <string>
#include <vector>

#include "coordinator/tokenizer.h"

namespace moe {

class TextStream {
 public:
  // `tokenizer` may be null (a model without tokenizer.model): then there is no text.
  // `prompt` gives context: SentencePiece drops the space of a piece at the very start of a
  // text, so the generated text is decoded after the prompt's last few tokens.
  TextStream(const Tokenizer* tokenizer, std::vector<std::string> stop,
             const std::vector<int>& prompt = {});

  // Adds a token and returns the text that is now final. Sets *stopped when a stop string
  // appeared; the returned text then ends just before it.
  std::string Add(int token, bool* stopped);
  // The text held back so far, at the end of the sequence (no stop string seen).
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  std::vector<std::string> stop_;
  size_t longest_stop_ = 0;
  std::vector<int> ids_;     // context, then the generated ids
  size_t context_ = 0;       // ids_[0, context_) are prompt tokens
  std::string context_text_;  // their decoded text
  std::string text_;         // decoded text of the generated ids
  size_t emitted_ = 0;   // bytes of text_ already returned
};

}  // namespace moe
