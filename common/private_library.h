// Loading one of moe's own shared libraries (the sentencepiece shim, the GPU path) with a
// private symbol scope: from beside the running executable, or else from the build tree (tests).
#pragma once

#include <string>

namespace moe {

// dlopen(RTLD_NOW | RTLD_LOCAL | extra_flags) of `file` beside the executable, then in
// `build_dir`; null with *error set (dlerror's words) when neither loads.
void* OpenPrivateLibrary(const std::string& file, const std::string& build_dir, int extra_flags,
                         std::string* error);

}  // namespace moe
