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
  // Decodes the window's tokens after its context into text_ from committed_ on.
  void DecodeWindow();

  const Tokenizer* tokenizer_;
  std::vector<std::string> stop_;
  size_t longest_stop_ = 0;
  // Decoding every generated token again at each step would cost the square of the output's
  // length. Text up to a token whose text ends in a whole character is final, so the window
  // keeps only the tokens since such a point, after a few tokens of context.
  std::vector<int> window_;   // context, then the generated ids not yet committed
  size_t context_ = 0;        // window_[0, context_) are context tokens
  std::string context_text_;  // their decoded text
  std::string text_;          // the decoded text of every generated id
  size_t committed_ = 0;      // bytes of text_ from tokens no longer in the window
  size_t emitted_ = 0;        // bytes of text_ already returned
};

}  // namespace moe
