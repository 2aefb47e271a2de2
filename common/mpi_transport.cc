#include "common/mpi_transport.h"

#define OMPI_SKIP_MPICXX 1  // the C API only
#include <mpi.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <random>
#include <thread>

#include "common/activity.h"
#include "common/check.h"
#include "common/doorbell.h"
#include "common/launch_env.h"
#include "common/shm_inbox.h"

namespace moe {
namespace {

constexpr int kTagPing = 12;  // "are you alive?", answered from inside every wait
constexpr int kTagPong = 13;
constexpr int kTagBytes = 14;
constexpr int kHostLen = 64;
constexpr int kAbortGraceSeconds = 5;
// A wait woken by rings still tests this often, in case a ring was lost.
constexpr int kRungSleepCapUs = 1000;

using Clock = std::chrono::steady_clock;

// Answers a pending ping from any rank, so a rank stuck waiting still proves it is alive.
void AnswerPings() {
  int flag = 0;
  MPI_Status status;
  MPI_Iprobe(MPI_ANY_SOURCE, kTagPing, MPI_COMM_WORLD, &flag, &status);
  if (!flag) return;
  static char byte = 0;  // static: the send may complete after this returns
  MPI_Recv(&byte, 1, MPI_CHAR, status.MPI_SOURCE, kTagPing, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  MPI_Request req;
  MPI_Isend(&byte, 1, MPI_CHAR, status.MPI_SOURCE, kTagPong, MPI_COMM_WORLD, &req);
  MPI_Request_free(&req);
}

// How a wait sleeps between tests. Ranks share cores, so a wait must sleep, never spin.
enum class Sleep {
  // Until the doorbell rings (at most the cap): every message awaited comes with a ring.
  kUntilRung,
  // For an eighth of the time waited so far (at least 2 us, at most the cap), or less if the
  // doorbell rings: a wait overshoots by about an eighth, and a long one costs a few dozen tests.
  kBackOff,
};

// Calls `done` until it returns true, sleeping in between as `sleep` says. Returns false at the
// deadline (timeout < 0: none).
template <typename Done>
bool WaitUntil(const Doorbell& doorbell, Done done, Sleep sleep, double timeout_seconds,
               int max_sleep_us) {
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(timeout_seconds);
  for (;;) {
    const auto now = Clock::now();
    const auto waited = std::chrono::duration_cast<std::chrono::microseconds>(now - start);
    AnswerPings();
    if (done()) return true;
    if (timeout_seconds >= 0 && now > deadline) return false;
    const int64_t us = sleep == Sleep::kUntilRung
                           ? max_sleep_us
                           : std::clamp<int64_t>(waited.count() / 8, 2, max_sleep_us);
    doorbell.Wait(std::chrono::microseconds(us));
  }
}

bool TestAll(std::vector<MPI_Request>& reqs) {
  int all = 0;
  MOE_CHECK(MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &all,
                        MPI_STATUSES_IGNORE) == MPI_SUCCESS,
            "MPI_Testall failed");
  return all != 0;
}

// A token every rank of this job shares and other jobs do not: rank 0's pick, broadcast.
uint64_t JobToken() {
  uint64_t token = 0;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) {
    std::random_device rd;
    token = (uint64_t{rd()} << 32 | rd()) ^ static_cast<uint64_t>(getpid()) ^
            static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  }
  MOE_CHECK(MPI_Bcast(&token, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD) == MPI_SUCCESS,
            "MPI_Bcast of the job token failed");
  return token;
}

// The largest message that goes through a shared-memory inbox: MOE_SHM_SLOT_BYTES if set (0
// sends everything by MPI), else ShmInbox::kDefaultSlotBytes.
int64_t ShmSlotBytes() {
  const LaunchEnv env = ReadLaunchEnv();
  if (!env.warning.empty()) std::cerr << "moe: " << env.warning << "\n";
  return env.shm_slot_bytes >= 0 ? env.shm_slot_bytes : ShmInbox::kDefaultSlotBytes;
}

class MpiTransport : public Transport {
 public:
  MpiTransport() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    char name[kHostLen] = {0};
    gethostname(name, kHostLen - 1);
    hosts_.resize(static_cast<size_t>(size_) * kHostLen);
    MOE_CHECK(MPI_Allgather(name, kHostLen, MPI_CHAR, hosts_.data(), kHostLen, MPI_CHAR,
                            MPI_COMM_WORLD) == MPI_SUCCESS,
              "MPI_Allgather of host names failed");
    SetCheckIdentity(rank_, host(rank_));
    // A star: rank 0 talks to every rank, a worker to rank 0 alone, so a worker never waits
    // for another worker.
    for (int p = 0; p < size_; ++p)
      if (p != rank_ && (rank_ == 0 || p == 0)) peers_.push_back(p);
    same_host_.resize(size_);
    index_at_rank0_.assign(size_ + 1, 0);
    for (int r = 0; r < size_; ++r) {
      same_host_[r] = host(r) == host(rank_);
      index_at_rank0_[r + 1] = index_at_rank0_[r] + (r > 0 && host(r) == host(0));
    }
    const uint64_t token = JobToken();
    doorbell_ = std::make_unique<Doorbell>(token, rank_);
    rings_.assign(size_, false);
    SetUpInboxes(token);
    // Waits sleep in steps of microseconds; the default 50 us of timer slack would stretch
    // each of them, and every layer's exchange with it.
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string host(int r) const override { return std::string(&hosts_[r * kHostLen]); }

  // One message to every peer, empty or not: its arrival is the peer's answer. To a peer on
  // this host it goes through the peer's shared-memory inbox when it fits; otherwise by MPI,
  // sized by probing. Rings tell peers on this host that it came. The exchange returns once
  // every peer's message is in and its own MPI sends are done: a send over TCP, or within a
  // node without single-copy support, needs this rank's progress calls to finish, and the
  // rank may compute for a long time after the exchange.
  Status Exchange(const ByteRuns& send, ByteRuns* recv, const ExchangeLabel& label,
                  double timeout_seconds) override {
    MOE_CHECK(static_cast<int>(send.counts.size()) == size_, "send counts per rank");
    SetActivity(label);
    for (int p = 0; p < size_; ++p) {
      if (p != rank_ && rank_ != 0 && p != 0)
        MOE_CHECK(send.counts[p] == 0, "a worker sent bytes to another worker");
      if (!(send.counts[p] >= 0 && send.counts[p] < INT_MAX))
        return InvalidArgument(
            "an exchange of over 2 GiB with one rank; lower the tokens per step");
    }
    const uint64_t seq = ++exchanges_;
    const std::vector<int>& peers = peers_;
    std::vector<MPI_Request> sends = Post(send, seq);

    // Every peer's message is found (and sized) before any is taken, so that they can be laid
    // end to end. A peer that can ring (it is reached by ours) wakes this wait itself.
    const int max_sleep = timeout_seconds < 0 ? 1000 : 100;
    std::vector<Incoming> in(peers.size());
    recv->counts.assign(size_, 0);
    bool all_ring = true;
    for (int p : peers) all_ring = all_ring && rings_[p];
    auto all_found = [&] {
      bool all = true;
      for (size_t i = 0; i < peers.size(); ++i)
        all = Find(peers[i], seq, &in[i], &recv->counts[peers[i]]) && all;
      return all;
    };
    if (!WaitUntil(*doorbell_, all_found, all_ring ? Sleep::kUntilRung : Sleep::kBackOff,
                   timeout_seconds, all_ring ? kRungSleepCapUs : max_sleep)) {
      std::string missing;
      for (size_t i = 0; i < peers.size(); ++i)
        if (!in[i].found) missing += (missing.empty() ? "" : ", ") + Describe(peers[i]);
      return TimedOut(missing, label, timeout_seconds);
    }

    recv->counts[rank_] = send.counts[rank_];
    recv->data.resize(recv->offset(size_));
    if (send.counts[rank_] > 0)
      std::memcpy(recv->data.data() + recv->offset(rank_), send.data.data() + send.offset(rank_),
                  send.counts[rank_]);
    std::vector<MPI_Request> reqs = std::move(sends);
    for (size_t i = 0; i < peers.size(); ++i) {
      const int p = peers[i];
      uint8_t* dst = recv->data.data() + recv->offset(p);
      if (!in[i].by_mpi) {
        if (recv->counts[p] > 0)
          std::memcpy(dst, inbox_->Data(SenderIndex(p, rank_), seq), recv->counts[p]);
        continue;
      }
      reqs.emplace_back();
      MPI_Imrecv(dst, static_cast<int>(recv->counts[p]), MPI_BYTE, &in[i].msg, &reqs.back());
    }
    // Within a node MPI may copy the bytes straight from the sender; otherwise the sender has
    // to push more of them, so it is rung at every test.
    auto received = [&] {
      if (TestAll(reqs)) return true;
      for (size_t i = 0; i < peers.size(); ++i)
        if (in[i].by_mpi && rings_[peers[i]]) doorbell_->Ring(peers[i]);
      return false;
    };
    if (!WaitUntil(*doorbell_, received, Sleep::kBackOff, timeout_seconds, max_sleep))
      return TimedOut(Unresponsive(), label, timeout_seconds);
    return Status::Ok();
  }

  Status CheckSameEverywhere(uint64_t value, const std::string& what) override {
    std::vector<uint64_t> all(size_);
    MOE_CHECK(MPI_Allgather(&value, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T,
                            MPI_COMM_WORLD) == MPI_SUCCESS,
              "MPI_Allgather failed");
    std::string odd;
    for (int r = 1; r < size_; ++r)
      if (all[r] != all[0]) odd += (odd.empty() ? "" : ", ") + Describe(r);
    if (odd.empty()) return Status::Ok();
    return FailedPrecondition(what + " differs between rank 0 (" + host(0) + ") and " + odd +
                              "; start every rank with the same binary, model directory and flags");
  }

  Status AgreeOnStatus(const Status& mine) override {
    constexpr int kLen = 2048;
    std::vector<char> local(kLen, 0), all(static_cast<size_t>(size_) * kLen);
    local[0] = static_cast<char>(mine.code());
    std::strncpy(&local[1], mine.message().c_str(), kLen - 2);
    MOE_CHECK(MPI_Allgather(local.data(), kLen, MPI_CHAR, all.data(), kLen, MPI_CHAR,
                            MPI_COMM_WORLD) == MPI_SUCCESS,
              "MPI_Allgather of load status failed");
    for (int r = 0; r < size_; ++r) {
      const char* entry = &all[static_cast<size_t>(r) * kLen];
      if (entry[0] == 0) continue;
      return Status(static_cast<StatusCode>(entry[0]), Describe(r) + ": " + std::string(entry + 1));
    }
    return Status::Ok();
  }

  [[noreturn]] void Abort(int code) override {
    // MPI_Abort asks mpirun to end every rank; should that stall (a stopped rank does not take
    // SIGTERM until continued), leaving still ends the job: mpirun ends it when a rank exits
    // without MPI_Finalize.
    std::thread([code] {
      std::this_thread::sleep_for(std::chrono::seconds(kAbortGraceSeconds));
      std::_Exit(code);
    }).detach();
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  // Pings every peer and names those that do not answer within a second.
  std::string Unresponsive() {
    // Static: requests to a dead peer never complete, and the job ends right after this.
    static std::vector<char> out, in;
    out.assign(size_, 0);
    in.assign(size_, 0);
    std::vector<MPI_Request> sends, recvs;
    std::vector<int> peers;
    for (int p = 0; p < size_; ++p) {
      if (p == rank_) continue;
      sends.emplace_back();
      MPI_Isend(&out[p], 1, MPI_CHAR, p, kTagPing, MPI_COMM_WORLD, &sends.back());
      if (rings_[p]) doorbell_->Ring(p);
      recvs.emplace_back();
      MPI_Irecv(&in[p], 1, MPI_CHAR, p, kTagPong, MPI_COMM_WORLD, &recvs.back());
      peers.push_back(p);
    }
    WaitUntil(*doorbell_, [&] { return TestAll(recvs); }, Sleep::kBackOff, 1.0, 1000);
    std::string missing;
    for (size_t i = 0; i < peers.size(); ++i) {
      int done = 0;
      MPI_Test(&recvs[i], &done, MPI_STATUS_IGNORE);
      if (!done) missing += (missing.empty() ? "" : ", ") + Describe(peers[i]);
    }
    return missing.empty() ? "a peer (every rank answers pings, yet the exchange stalled)" : missing;
  }

  std::string Describe(int r) const { return "rank " + std::to_string(r) + " on " + host(r); }

  Status TimedOut(const std::string& who, const ExchangeLabel& label, double timeout) const {
    return Status(StatusCode::kUnavailable,
                  who + " did not answer within " + SecondsText(timeout) + " s during " +
                      label.Text() + " (seen from rank " + std::to_string(rank_) + " on " +
                      host(rank_) +
                      "); the rank died or hangs. Raise --rank-timeout if it is only slow");
  }

  int rank_ = 0, size_ = 1;
  std::vector<char> hosts_;
  std::unique_ptr<Doorbell> doorbell_;
  std::vector<int> peers_;         // the ranks this one exchanges with
  std::vector<bool> rings_;        // [ranks] our last ring reached it (so it rings us too)
  std::vector<bool> same_host_;    // [ranks] on this rank's host
  std::vector<int> index_at_rank0_;  // [ranks + 1] workers on rank 0's host before this rank
  std::unique_ptr<ShmInbox> inbox_;                     // this rank's, if the host allows
  std::vector<std::unique_ptr<ShmInbox>> peer_inbox_;  // [ranks] mapped: a peer on this host
  std::vector<bool> shm_from_;     // [ranks] that peer writes to our inbox
  uint64_t exchanges_ = 0;         // begun so far: the number of the one under way

  // Rank s's place among the senders to rank r's inbox: a worker hears from rank 0 alone, rank
  // 0 from the workers on its host, in rank order.
  int SenderIndex(int s, int r) const { return r == 0 ? index_at_rank0_[s] : 0; }
  int Senders(int r) const { return r == 0 ? index_at_rank0_[size_] : 1; }

  // Puts exchange `seq`'s message to each peer in its inbox if it fits, else sends it by MPI
  // (and says so in the inbox, if any), then rings the peers on this host. Returns the sends.
  std::vector<MPI_Request> Post(const ByteRuns& send, uint64_t seq) {
    std::vector<MPI_Request> sends;
    for (int p : peers_) {
      const uint8_t* bytes = send.data.data() + send.offset(p);
      ShmInbox* inbox = peer_inbox_[p].get();
      if (inbox != nullptr && send.counts[p] <= inbox->slot_bytes()) {
        inbox->Put(SenderIndex(rank_, p), seq, bytes, send.counts[p]);
        continue;
      }
      sends.emplace_back();
      MPI_Isend(bytes, static_cast<int>(send.counts[p]), MPI_BYTE, p, kTagBytes, MPI_COMM_WORLD,
                &sends.back());
      if (inbox != nullptr) inbox->Put(SenderIndex(rank_, p), seq, nullptr, ShmInbox::kViaMpi);
    }
    for (int p : peers_)
      if (same_host_[p]) rings_[p] = doorbell_->Ring(p);
    return sends;
  }

  // Where peer p's message of exchange `seq` is: in our inbox, or matched by MPI.
  struct Incoming {
    bool found = false;
    bool by_mpi = false;
    MPI_Message msg = MPI_MESSAGE_NULL;
  };

  // Looks for peer p's message once; when it is there, sets `count` to its size.
  bool Find(int p, uint64_t seq, Incoming* in, int64_t* count) {
    if (in->found) return true;
    if (shm_from_[p] && !in->by_mpi) {
      int64_t bytes = 0;
      if (!inbox_->Peek(SenderIndex(p, rank_), seq, &bytes)) return false;
      in->by_mpi = bytes == ShmInbox::kViaMpi;
      if (!in->by_mpi) {
        *count = bytes;
        return in->found = true;
      }
    }
    int flag = 0, bytes = 0;
    MPI_Status status;
    MPI_Improbe(p, kTagBytes, MPI_COMM_WORLD, &flag, &in->msg, &status);
    if (!flag) return false;
    MPI_Get_count(&status, MPI_BYTE, &bytes);
    *count = bytes;
    return in->by_mpi = in->found = true;
  }

  // Every rank makes its inbox; ranks map the inboxes of their peers on this host, and each
  // learns which peers can write to its own. Names are gone once every rank is past this.
  void SetUpInboxes(uint64_t token) {
    auto name = [token](int r) {
      char text[64];
      std::snprintf(text, sizeof(text), "/moe-%016llx-%d",
                    static_cast<unsigned long long>(token), r);
      return std::string(text);
    };
    const int64_t slot_bytes = ShmSlotBytes();
    bool neighbour = false;
    for (int p : peers_) neighbour = neighbour || same_host_[p];
    if (neighbour && slot_bytes > 0)
      inbox_ = ShmInbox::Create(name(rank_), Senders(rank_), slot_bytes);
    MOE_CHECK(MPI_Barrier(MPI_COMM_WORLD) == MPI_SUCCESS, "MPI_Barrier failed");
    peer_inbox_.resize(size_);
    std::vector<char> mapped(size_, 0), all(static_cast<size_t>(size_) * size_);
    for (int p : peers_) {
      if (!same_host_[p]) continue;
      if (slot_bytes > 0) peer_inbox_[p] = ShmInbox::Open(name(p), Senders(p), slot_bytes);
      mapped[p] = peer_inbox_[p] != nullptr;
    }
    MOE_CHECK(MPI_Allgather(mapped.data(), size_, MPI_CHAR, all.data(), size_, MPI_CHAR,
                            MPI_COMM_WORLD) == MPI_SUCCESS,
              "MPI_Allgather of shared-memory inboxes failed");
    if (inbox_ != nullptr) inbox_->Unlink();
    shm_from_.assign(size_, false);
    for (int s = 0; s < size_; ++s)
      shm_from_[s] = all[static_cast<size_t>(s) * size_ + rank_] != 0;
  }
};

}  // namespace

Status InitMpi(int* argc, char*** argv) {
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    return Internal("MPI_Init_thread failed");
  // Errors come back as codes, which MOE_CHECK turns into a message with rank and host.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  return Status::Ok();
}

void FinalizeMpi() { MPI_Finalize(); }

std::unique_ptr<Transport> MakeMpiTransport() { return std::make_unique<MpiTransport>(); }

}  // namespace moe
