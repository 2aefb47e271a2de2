#include "coordinator/text_stream.h"

#include <algorithm>
#include <string_view>

namespace moe {
namespace {

// Bytes of `s` up to which every UTF-8 character is complete and not a replacement character
// left by a token that is only part of a character.
size_t CompletePrefix(std::string_view s) {
  size_t end = s.size();
  // Back up over a trailing U+FFFD (EF BF BD): the next token may complete the character.
  while (end >= 3 && s.compare(end - 3, 3, "\xEF\xBF\xBD") == 0) end -= 3;
  // Back up over a truncated multi-byte sequence.
  size_t i = end;
  int back = 0;
  while (i > 0 && back < 4 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) {
    --i;
    ++back;
  }
  if (i > 0) {
    const unsigned char lead = static_cast<unsigned char>(s[i - 1]);
    const int len = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (len > 1 && back + 1 < len) end = i - 1;
  }
  return end;
}

}  // namespace

// Tokens of context before the window: enough for SentencePiece to keep the space a piece
// starts with, and for a character's bytes to be seen together.
constexpr size_t kContext = 4;
// The window is committed once it holds this many generated tokens and ends in a whole
// character.
constexpr size_t kCommitAfter = 32;

TextStream::TextStream(const Tokenizer* tokenizer, std::vector<std::string> stop,
                       const std::vector<int>& prompt)
    : tokenizer_(tokenizer), stop_(std::move(stop)) {
  stop_.erase(std::remove(stop_.begin(), stop_.end(), std::string()), stop_.end());
  for (const auto& s : stop_) longest_stop_ = std::max(longest_stop_, s.size());
  window_.assign(prompt.end() - std::min(prompt.size(), kContext), prompt.end());
  context_ = window_.size();
  if (tokenizer_ != nullptr) context_text_ = tokenizer_->Decode(window_);
}

void TextStream::DecodeWindow() {
  std::string tail = tokenizer_->Decode(window_);
  if (tail.compare(0, context_text_.size(), context_text_) == 0) {
    tail.erase(0, context_text_.size());
  } else {  // the context decodes differently next to the new tokens: decode alone
    tail = tokenizer_->Decode(std::vector<int>(window_.begin() + context_, window_.end()));
  }
  text_.resize(committed_);
  text_ += tail;
}

std::string TextStream::Add(int token, bool* stopped) {
  *stopped = false;
  if (tokenizer_ == nullptr) return "";
  window_.push_back(token);
  DecodeWindow();
  // The text that is final: whole characters only. While a character's byte tokens arrive it
  // ends in replacement characters that the next token may turn into that character.
  const size_t complete = CompletePrefix(text_);
  // A stop string that ends in the final text: cut there.
  const size_t search_from = emitted_ > longest_stop_ ? emitted_ - longest_stop_ : 0;
  size_t cut = std::string::npos;
  for (const auto& s : stop_) {
    const size_t at = text_.find(s, search_from);
    if (at != std::string::npos && at + s.size() <= complete) cut = std::min(cut, at);
  }
  if (cut != std::string::npos) {
    *stopped = true;
    std::string out = cut > emitted_ ? text_.substr(emitted_, cut - emitted_) : "";
    emitted_ = std::max(emitted_, cut);
    return out;
  }
  if (complete == text_.size() && window_.size() - context_ >= kCommitAfter) {
    window_.erase(window_.begin(), window_.end() - kContext);
    context_ = kContext;
    context_text_ = tokenizer_->Decode(window_);
    committed_ = text_.size();
  }
  // Hold back what could still grow into a stop string, and incomplete characters.
  size_t ready = complete;
  if (longest_stop_ > 1) {
    const size_t hold = std::min(ready, longest_stop_ - 1);
    ready = CompletePrefix(std::string_view(text_).substr(0, ready - hold));
  }
  if (ready <= emitted_) return "";
  std::string out = text_.substr(emitted_, ready - emitted_);
  emitted_ = ready;
  return out;
}

std::string TextStream::Flush() {
  if (emitted_ >= text_.size()) return "";
  std::string out = text_.substr(emitted_);
  emitted_ = text_.size();
  return out;
}

}  // namespace moe
