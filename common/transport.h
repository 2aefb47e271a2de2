// The narrow interface every coordinator<->worker byte travels through. One exchange is a star:
// rank 0 sends a byte run to every rank (possibly empty) and receives one from every rank; a
// worker exchanges with rank 0 alone. Implementations: in-process (one rank) and MPI.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace moe {

// What an exchange is for, named when a peer fails to answer.
struct ExchangeLabel {
  const char* phase = "";  // "dispatch", "combine", "GPU link setup"
  int layer = -1;          // -1: outside the layers
  int64_t step = -1;       // -1: outside the steps

  // "dispatch of layer 3, step 17"; outside the layers "stop at step 17", or the phase alone.
  std::string Text() const {
    std::string s = phase;
    if (layer >= 0) s += " of layer " + std::to_string(layer);
    if (step >= 0) s += (layer >= 0 ? ", step " : " at step ") + std::to_string(step);
    return s;
  }
};

// Seconds as given, for messages: "3", "0.5" (a timeout of 0.5 s is not "0 s").
std::string SecondsText(double seconds);

// A byte run per rank, laid end to end: rank r's bytes are data[offset(r), offset(r) + counts[r]).
struct ByteRuns {
  std::vector<uint8_t> data;
  std::vector<int64_t> counts;  // [ranks]
  int64_t offset(int r) const {
    int64_t o = 0;
    for (int i = 0; i < r; ++i) o += counts[i];
    return o;
  }
  const uint8_t* at(int r) const { return data.data() + offset(r); }
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string host(int rank) const = 0;

  // Sends send.counts[r] bytes to each rank r and fills recv from every rank (a worker's counts
  // to and from other workers are 0: it waits for rank 0 alone). Waits at most
  // `timeout_seconds` (< 0: forever, for an idle worker); on timeout the status names the ranks
  // that did not answer, their hosts, and the label.
  virtual Status Exchange(const ByteRuns& send, ByteRuns* recv, const ExchangeLabel& label,
                          double timeout_seconds) = 0;

  // Error on every rank when `value` differs between ranks, naming the odd ones and `what`.
  virtual Status CheckSameEverywhere(uint64_t value, const std::string& what) = 0;

  // Every rank passes its own status; every rank gets back the first failure of any rank
  // (with that rank and host named), or OK when all succeeded.
  virtual Status AgreeOnStatus(const Status& mine) = 0;

  // Ends the whole job (every rank) with this exit code.
  [[noreturn]] virtual void Abort(int code) = 0;
};

// Carries the expert rows and answers between the ranks' GPUs directly when every rank has a
// GPU of its own (common/cuda/nccl_link.h); the messages that describe them still go through
// the Transport (common/wire_format.h). The host code holds it; the GPU library uses it.
class GpuLink {
 public:
  virtual ~GpuLink() = default;
};

// One rank: the exchange hands the bytes straight back.
std::unique_ptr<Transport> MakeInProcessTransport();

}  // namespace moe
