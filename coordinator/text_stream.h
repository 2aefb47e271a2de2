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
  TextStream(const Tokenizer* tokenizer, std::vector<std::string> stop);

  // Adds a token and returns the text that is now final. Sets *stopped when a stop string
  // appeared; the returned text then ends just before it.
  std::string Add(int token, bool* stopped);
  // The text held back so far, at the end of the sequence (no stop string seen).
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  std::vector<std::string> stop_;
  size_t longest_stop_ = 0;
  std::vector<int> ids_;
  std::string text_;     // decoded text of ids_
  size_t emitted_ = 0;   // bytes of text_ already returned
};

}  // namespace moe
