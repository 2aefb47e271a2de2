// The MPI transport: a star of point-to-point messages, counts first (so a rank that does not
// answer is known by name), then the bytes. Every wait is MPI_Test with a sleep of an eighth of
// the time waited so far, so idle ranks leave the cores to the ranks that work.
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
