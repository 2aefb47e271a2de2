#include "common/launch_env.h"

#include <cstdlib>
#include <initializer_list>

namespace moe {

LaunchEnv ReadLaunchEnv() {
  LaunchEnv env;
  // Open MPI's mpirun, and PMIx/PMI launchers such as srun --mpi=pmix.
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(name) != nullptr) env.under_mpi = true;
  return env;
}

}  // namespace moe
