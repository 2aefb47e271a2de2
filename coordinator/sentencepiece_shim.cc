// A C interface to libsentencepiece, built as its own shared library and loaded by Tokenizer
// with dlopen(RTLD_LOCAL | RTLD_DEEPBIND). Debian's libsentencepiece carries its own copy of
// protobuf-lite (3.14) with exported symbols, which clashes with the protobuf (3.21) that gRPC
// uses; loading it in a private symbol scope lets each use its own.
#include <sentencepiece_processor.h>

#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

extern "C" {

// Null, with the reason in `error`, when the file is not a SentencePiece model (the library
// throws for some unreadable files; no exception may cross into moe).
void* moe_spm_load(const char* path, char* error, int error_len) {
  auto fail = [&](const std::string& why) -> void* {
    std::strncpy(error, why.c_str(), error_len - 1);
    error[error_len - 1] = 0;
    return nullptr;
  };
  try {
    auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
    const auto status = sp->Load(path);
    if (!status.ok()) return fail(status.ToString());
    return sp.release();
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}

void moe_spm_free(void* sp) { delete static_cast<sentencepiece::SentencePieceProcessor*>(sp); }

// Writes up to `cap` ids; returns how many there are, or -1 when encoding failed.
int moe_spm_encode(void* sp, const char* text, int len, int* out, int cap) {
  std::vector<int> ids;
  try {
    if (!static_cast<sentencepiece::SentencePieceProcessor*>(sp)
             ->Encode(std::string(text, len), &ids)
             .ok())
      return -1;
  } catch (const std::exception&) {
    return -1;
  }
  for (int i = 0; i < static_cast<int>(ids.size()) && i < cap; ++i) out[i] = ids[i];
  return static_cast<int>(ids.size());
}

// Writes up to `cap` bytes of the text of `ids`; returns its length.
int moe_spm_decode(void* sp, const int* ids, int n, char* out, int cap) {
  std::string text;
  static_cast<sentencepiece::SentencePieceProcessor*>(sp)
      ->Decode(std::vector<int>(ids, ids + n), &text)
      .IgnoreError();
  std::memcpy(out, text.data(), std::min<size_t>(text.size(), static_cast<size_t>(cap)));
  return static_cast<int>(text.size());
}

int moe_spm_piece_size(void* sp) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(sp)->GetPieceSize();
}
int moe_spm_bos_id(void* sp) { return static_cast<sentencepiece::SentencePieceProcessor*>(sp)->bos_id(); }
int moe_spm_eos_id(void* sp) { return static_cast<sentencepiece::SentencePieceProcessor*>(sp)->eos_id(); }
int moe_spm_is_control(void* sp, int id) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(sp)->IsControl(id) ? 1 : 0;
}

}  // extern "C"
