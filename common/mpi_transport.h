// The MPI transport: a star of messages, one per peer and exchange (empty or not, so a rank
// that does not answer is known by name). Between ranks on one host they go through
// shared-memory inboxes (common/shm_inbox.h) when they fit, otherwise by MPI, sized by probing.
// Waits sleep, so idle ranks leave the cores to the ranks that work: on a doorbell
// (common/doorbell.h) that peers on the same host ring when they send, otherwise for an eighth
// of the time waited so far.
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
