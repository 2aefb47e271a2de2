#include "common/check.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace moe {
namespace {

int g_rank = 0;
std::string g_host;

}  // namespace

void SetCheckIdentity(int rank, const std::string& host) {
  g_rank = rank;
  g_host = host;
}

void CheckFailed(const char* file, int line, const char* expr, const std::string& message) {
  if (g_host.empty()) {
    char name[256] = {0};
    gethostname(name, sizeof(name) - 1);
    g_host = name;
  }
  std::fprintf(stderr, "FATAL [rank %d on %s] %s:%d: check failed: %s: %s\n", g_rank,
               g_host.c_str(), file, line, expr, message.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace moe
