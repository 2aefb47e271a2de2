// The only place the process environment is read: how this process was launched, and the
// transport's tuning variable.
#pragma once

#include <cstdint>
#include <string>

namespace moe {

struct LaunchEnv {
  bool under_mpi = false;  // started by mpirun/srun (an MPI launcher set its variables)
  // MOE_SHM_SLOT_BYTES: the largest message ranks on one host pass through shared memory
  // (0: none; -1: unset, the transport's default).
  int64_t shm_slot_bytes = -1;
  std::string warning;  // a variable that is set but unusable, and what is used instead
};

LaunchEnv ReadLaunchEnv();

}  // namespace moe
