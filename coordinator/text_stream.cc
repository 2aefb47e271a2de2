#include "coordinator/text_stream.h"

#include <algorithm>

namespace moe {
namespace {

// Bytes of `s` up to which every UTF-8 character is complete and not a replacement character
// left by a token that is only part of a character.
size_t CompletePrefix(const std::string& s) {
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

TextStream::TextStream(const Tokenizer* tokenizer, std::vector<std::string> stop,
                       const std::vector<int>& prompt)
    : tokenizer_(tokenizer), stop_(std::move(stop)) {
  stop_.erase(std::remove(stop_.begin(), stop_.end(), std::string()), stop_.end());
  for (const auto& s : stop_) longest_stop_ = std::max(longest_stop_, s.size());
  constexpr size_t kContext = 4;
  ids_.assign(prompt.end() - std::min(prompt.size(), kContext), prompt.end());
  context_ = ids_.size();
  if (tokenizer_ != nullptr) context_text_ = tokenizer_->Decode(ids_);
}

std::string TextStream::Add(int token, bool* stopped) {
  *stopped = false;
  if (tokenizer_ == nullptr) return "";
  ids_.push_back(token);
  text_ = tokenizer_->Decode(ids_);
  if (text_.compare(0, context_text_.size(), context_text_) == 0) {
    text_.erase(0, context_text_.size());
  } else {  // the context decodes differently next to the new tokens: decode alone
    text_ = tokenizer_->Decode(std::vector<int>(ids_.begin() + context_, ids_.end()));
  }
  // A stop string that ends in the new text: cut there.
  const size_t search_from = emitted_ > longest_stop_ ? emitted_ - longest_stop_ : 0;
  size_t cut = std::string::npos;
  for (const auto& s : stop_) {
    const size_t at = text_.find(s, search_from);
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  if (cut != std::string::npos) {
    *stopped = true;
    std::string out = cut > emitted_ ? text_.substr(emitted_, cut - emitted_) : "";
    emitted_ = std::max(emitted_, cut);
    return out;
  }
  // Hold back what could still grow into a stop string, and incomplete characters.
  size_t ready = CompletePrefix(text_);
  if (longest_stop_ > 1) {
    const size_t hold = std::min(ready, longest_stop_ - 1);
    ready = CompletePrefix(text_.substr(0, ready - hold));
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
