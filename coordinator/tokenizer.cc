#include "coordinator/tokenizer.h"

#include <dlfcn.h>
#include <unistd.h>

#include <mutex>

#include "common/private_library.h"

namespace moe {

struct Tokenizer::Api {
  void* (*load)(const char*, char*, int);
  void (*free)(void*);
  int (*encode)(void*, const char*, int, int*, int);
  int (*decode)(void*, const int*, int, char*, int);
  int (*piece_size)(void*);
  int (*bos_id)(void*);
  int (*eos_id)(void*);
  int (*is_control)(void*, int);
};

namespace {

// The shim sits beside the binary (or in the build tree, for tests).
StatusOr<const Tokenizer::Api*> LoadApi() {
  static std::once_flag once;
  static Tokenizer::Api api;
  static std::string error;
  std::call_once(once, [] {
    void* lib = OpenPrivateLibrary("libmoe_sentencepiece.so", MOE_SHIM_DIR, RTLD_DEEPBIND, &error);
    if (lib == nullptr) return;
    auto sym = [lib](const char* name) { return dlsym(lib, name); };
    api.load = reinterpret_cast<decltype(api.load)>(sym("moe_spm_load"));
    api.free = reinterpret_cast<decltype(api.free)>(sym("moe_spm_free"));
    api.encode = reinterpret_cast<decltype(api.encode)>(sym("moe_spm_encode"));
    api.decode = reinterpret_cast<decltype(api.decode)>(sym("moe_spm_decode"));
    api.piece_size = reinterpret_cast<decltype(api.piece_size)>(sym("moe_spm_piece_size"));
    api.bos_id = reinterpret_cast<decltype(api.bos_id)>(sym("moe_spm_bos_id"));
    api.eos_id = reinterpret_cast<decltype(api.eos_id)>(sym("moe_spm_eos_id"));
    api.is_control = reinterpret_cast<decltype(api.is_control)>(sym("moe_spm_is_control"));
    if (!api.load || !api.free || !api.encode || !api.decode || !api.piece_size || !api.bos_id ||
        !api.eos_id || !api.is_control)
      api.load = nullptr, error = "libmoe_sentencepiece.so lacks a symbol";
    else
      error.clear();
  });
  if (api.load == nullptr)
    return Internal("cannot load libmoe_sentencepiece.so beside the moe binary (" + error +
                    "); rebuild with scripts/build.sh");
  return &api;
}

std::string HexByte(char c) {
  const char* digits = "0123456789abcdef";
  const auto b = static_cast<unsigned char>(c);
  return {digits[b >> 4], digits[b & 15]};
}

}  // namespace

int64_t FirstInvalidUtf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const int64_t n = static_cast<int64_t>(text.size());
  for (int64_t i = 0; i < n;) {
    const unsigned char b = s[i];
    // The continuation bytes the lead byte asks for, and the range of the first of them
    // (narrower after e0, ed, f0 and f4: overlong forms, surrogates, past U+10FFFF).
    int more = 0;
    unsigned char lo = 0x80, hi = 0xbf;
    if (b < 0x80) {
      more = 0;
    } else if (b >= 0xc2 && b <= 0xdf) {
      more = 1;
    } else if (b >= 0xe0 && b <= 0xef) {
      more = 2;
      if (b == 0xe0) lo = 0xa0;
      if (b == 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      more = 3;
      if (b == 0xf0) lo = 0x90;
      if (b == 0xf4) hi = 0x8f;
    } else {
      return i;  // a continuation byte with no lead, c0, c1, or f5 and above
    }
    for (int k = 1; k <= more; ++k) {
      if (i + k == n) return i;  // cut short at the end
      const unsigned char c = s[i + k];
      if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xbf)) return i + k;
    }
    i += 1 + more;
  }
  return -1;
}

Tokenizer::~Tokenizer() {
  if (sp_ != nullptr) api_->free(sp_);
}

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& path) {
  MOE_ASSIGN_OR_RETURN(const Api* api, LoadApi());
  char error[512] = {0};
  void* sp = api->load(path.c_str(), error, sizeof(error));
  if (sp == nullptr)
    return FailedPrecondition(path + ": not a SentencePiece tokenizer (" + error +
                              "); put the model's own tokenizer.model there, or remove the "
                              "file to run on token ids alone");
  auto tok = std::unique_ptr<Tokenizer>(new Tokenizer());
  tok->api_ = api;
  tok->sp_ = sp;
  tok->vocab_ = api->piece_size(sp);
  tok->bos_ = api->bos_id(sp);
  tok->eos_ = api->eos_id(sp);
  tok->control_.resize(tok->vocab_);
  for (int id = 0; id < tok->vocab_; ++id) tok->control_[id] = api->is_control(sp, id) != 0;
  return tok;
}

Status CheckUtf8(std::string_view text) {
  if (const int64_t at = FirstInvalidUtf8(text); at >= 0)
    return InvalidArgument("the text is not valid UTF-8: byte " + std::to_string(at) + " (0x" +
                           HexByte(text[at]) + ") breaks its encoding; send UTF-8 text");
  return Status::Ok();
}

std::string Tokenizer::PathForModel(const std::string& model_dir) {
  return model_dir + "/tokenizer.model";
}

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::LoadForModel(const std::string& model_dir,
                                                             int vocab) {
  const std::string path = PathForModel(model_dir);
  if (access(path.c_str(), F_OK) != 0) return std::unique_ptr<Tokenizer>();
  MOE_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, Load(path));
  if (tok->vocab_size() > vocab)
    return FailedPrecondition(path + ": the tokenizer has " + std::to_string(tok->vocab_size()) +
                              " pieces but config.json has vocab_size " + std::to_string(vocab) +
                              "; they belong to different models");
  return tok;
}

StatusOr<std::vector<int>> Tokenizer::Encode(const std::string& text, bool add_bos) const {
  MOE_RETURN_IF_ERROR(CheckUtf8(text));
  std::vector<int> ids(text.size() + 8);
  int n = api_->encode(sp_, text.data(), static_cast<int>(text.size()), ids.data(),
                       static_cast<int>(ids.size()));
  if (n > static_cast<int>(ids.size())) {
    ids.resize(n);
    n = api_->encode(sp_, text.data(), static_cast<int>(text.size()), ids.data(), n);
  }
  if (n < 0) return Internal("the SentencePiece tokenizer failed to encode the text");
  ids.resize(n);
  if (add_bos) ids.insert(ids.begin(), bos_);
  return ids;
}

std::string Tokenizer::Decode(const std::vector<int>& ids) const {
  std::vector<int> kept;
  for (int id : ids)
    if (id >= 0 && id < vocab_ && !control_[id]) kept.push_back(id);
  std::string text(kept.size() * 8 + 16, '\0');
  int n = api_->decode(sp_, kept.data(), static_cast<int>(kept.size()), text.data(),
                       static_cast<int>(text.size()));
  if (n > static_cast<int>(text.size())) {
    text.resize(n);
    n = api_->decode(sp_, kept.data(), static_cast<int>(kept.size()), text.data(), n);
  }
  text.resize(n);
  return text;
}

}  // namespace moe
