// The only place the process environment is read: how this process was launched.
#pragma once

namespace moe {

struct LaunchEnv {
  bool under_mpi = false;  // started by mpirun/srun (an MPI launcher set its variables)
};

LaunchEnv ReadLaunchEnv();

}  // namespace moe
