// The MPI transport: counts by point-to-point messages (so a rank that does not answer is
// known by name), then the bytes in one MPI_Ialltoallv. Every wait is MPI_Test with a sleep
// that backs off from 1 us, so idle ranks leave the cores to the ranks that work.
// Only the engine thread calls MPI (MPI_THREAD_FUNNELED).
#pragma once

#include <memory>

#include "common/transport.h"

namespace moe {

// Call once at startup when launched by mpirun/srun; MPI_Init_thread with FUNNELED.
Status InitMpi(int* argc, char*** argv);
void FinalizeMpi();

// Over MPI_COMM_WORLD; gathers every rank's host name.
std::unique_ptr<Transport> MakeMpiTransport();

}  // namespace moe
