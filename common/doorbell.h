// A doorbell per rank: a peer on the same host that has just posted a message rings it, and a
// rank waiting for messages sleeps on it instead of for a fixed time. So a rank wakes within
// microseconds of its data arriving, yet sleeps (leaving the cores to the ranks that compute)
// for as long as nothing comes. It only shortens sleeps: a ring that is lost (a peer on
// another host, another network namespace, a full queue) costs the waiter its usual polling.
//
// Each doorbell is a datagram socket in Linux's abstract namespace, named by a token the job's
// ranks share and the rank, so it needs no files and vanishes with the process.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace moe {

class Doorbell {
 public:
  // Opens this rank's doorbell; `job` is the same on every rank of the job and differs between
  // jobs. On failure the doorbell stays silent: Ring does nothing and Wait only sleeps.
  Doorbell(uint64_t job, int rank);
  ~Doorbell();
  Doorbell(const Doorbell&) = delete;
  Doorbell& operator=(const Doorbell&) = delete;

  bool open() const { return fd_ >= 0; }

  // Wakes `rank` if it waits on its doorbell on this host; never blocks. True when the ring
  // reached it (or it has rings waiting already).
  bool Ring(int rank) const;

  // Sleeps until the doorbell rings or `timeout` passes; clears every ring that came before.
  void Wait(std::chrono::microseconds timeout) const;

 private:
  std::string Address(int rank) const;

  uint64_t job_;
  int fd_ = -1;
};

}  // namespace moe
