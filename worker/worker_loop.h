// A worker rank's whole life after loading: wait (without spinning) for a dispatch, answer it,
// until the coordinator says stop.
#pragma once

#include "common/transport.h"
#include "worker/expert_worker.h"

namespace moe {

Status ServeExperts(Transport& transport, ExpertWorker& worker, double rank_timeout_seconds);

}  // namespace moe
