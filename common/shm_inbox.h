// Messages between ranks on one host through shared memory rather than MPI. Each rank's inbox
// is a POSIX shared-memory segment with two slots per sender, used in turn by the exchanges
// (exchange n writes slot n % 2). Sending is a copy into the receiver's slot and a release store
// of the exchange's number; receiving, an acquire load that sees the number and a copy out.
// MPI costs a few tens of microseconds a message here (matching, a single-copy handshake,
// progress calls); this costs the copy.
//
// Two slots are enough for the exchange's rule: a rank sends to its peers, then receives from
// each. Before writing slot n % 2 again (exchange n + 2) a sender has received its peer's
// message of exchange n + 1, which the peer sent only after it had taken exchange n's bytes.
//
// Segments are named by a token the job's ranks share, and unlinked as soon as every peer has
// mapped them, so none outlives the job unless a rank dies during start-up, between the two;
// opening a peer's segment proves it shares this host's memory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

namespace moe {

class ShmInbox {
 public:
  static constexpr int64_t kDefaultSlotBytes = 256 << 10;  // larger messages go by MPI
  static constexpr int64_t kViaMpi = -1;  // a slot's size: "the bytes come by MPI"

  // Creates the inbox `name` with slots of `slot_bytes` for `senders` senders; null if this
  // host refuses (no /dev/shm, too little room in it).
  static std::unique_ptr<ShmInbox> Create(const std::string& name, int senders,
                                          int64_t slot_bytes);
  // Maps a peer's inbox of the same shape; null if it is not on this host (or not of this job).
  static std::unique_ptr<ShmInbox> Open(const std::string& name, int senders,
                                        int64_t slot_bytes);
  ~ShmInbox();
  ShmInbox(const ShmInbox&) = delete;
  ShmInbox& operator=(const ShmInbox&) = delete;

  void Unlink();  // removes the name; mappings stay valid

  int64_t slot_bytes() const { return slot_bytes_; }

  // Sender `s` (an index among this inbox's senders) puts exchange `seq`'s message: `bytes`
  // (at most slot_bytes()) from `data`, or kViaMpi.
  void Put(int s, uint64_t seq, const uint8_t* data, int64_t bytes);
  // Whether exchange `seq`'s message from sender `s` is here; if so, its size (or kViaMpi).
  bool Peek(int s, uint64_t seq, int64_t* bytes) const;
  const uint8_t* Data(int s, uint64_t seq) const;

 private:
  struct Slot {
    uint64_t seq;  // the exchange whose message the slot holds (0: none yet); atomic_ref only
    int64_t bytes;
  };
  ShmInbox(std::string name, uint8_t* base, int senders, int64_t slot_bytes)
      : name_(std::move(name)), base_(base), senders_(senders), slot_bytes_(slot_bytes) {}
  Slot* slot(int s, uint64_t seq) const;
  size_t stride() const;  // from one slot to the next: a multiple of 64 bytes
  static size_t Size(int senders, int64_t slot_bytes);

  std::string name_;
  uint8_t* base_;
  int senders_;
  int64_t slot_bytes_;
};

}  // namespace moe
