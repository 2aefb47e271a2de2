// MOE_CHECK: the aborting tier, for broken invariants and MPI/NCCL/CUDA failures.
// Prints rank, host and file:line, then aborts. Never for errors a user can cause.
#pragma once

#include <string>

namespace moe {

[[noreturn]] void CheckFailed(const char* file, int line, const char* expr, const std::string& message);

// The rank and host printed by failed checks; set once at startup by the transport.
void SetCheckIdentity(int rank, const std::string& host);

}  // namespace moe

#define MOE_CHECK(cond, message)                                   \
  do {                                                             \
    if (!(cond)) ::moe::CheckFailed(__FILE__, __LINE__, #cond, (message)); \
  } while (0)
