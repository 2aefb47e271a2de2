#include "common/launch_env.h"

#include <cstdlib>
#include <initializer_list>

namespace moe {

LaunchEnv ReadLaunchEnv() {
  LaunchEnv env;
  // Open MPI's mpirun, and PMIx/PMI launchers such as srun --mpi=pmix.
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(name) != nullptr) env.under_mpi = true;
  if (const char* text = std::getenv("MOE_SHM_SLOT_BYTES")) {
    char* end = nullptr;
    const long long v = std::strtoll(text, &end, 10);
    if (end != text && *end == '\0' && v >= 0 && v <= (1ll << 30))
      env.shm_slot_bytes = v;
    else
      env.warning = "MOE_SHM_SLOT_BYTES='" + std::string(text) +
                    "' is not a byte count in [0, 2^30]; using the default";
  }
  return env;
}

}  // namespace moe
