#include "common/private_library.h"

#include <dlfcn.h>
#include <unistd.h>

#include <climits>

namespace moe {
namespace {

std::string ExecutableDir() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, n);
  return path.substr(0, path.rfind('/'));
}

}  // namespace

void* OpenPrivateLibrary(const std::string& file, const std::string& build_dir, int extra_flags,
                         std::string* error) {
  for (const std::string& dir : {ExecutableDir(), build_dir}) {
    if (void* lib = dlopen((dir + "/" + file).c_str(), RTLD_NOW | RTLD_LOCAL | extra_flags))
      return lib;
    *error = dlerror();
  }
  return nullptr;
}

}  // namespace moe
