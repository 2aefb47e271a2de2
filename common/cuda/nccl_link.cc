#include "common/cuda/nccl_link.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>
#include <type_traits>

#include "common/cuda/gpu_check.h"
#include "common/cuda/gpu_ops.h"

namespace moe::gpu {
namespace {

// NCCL's entry points, taken from libnccl.so.2 with dlopen.
struct NcclApi {
  decltype(&ncclGetUniqueId) get_unique_id;
  decltype(&ncclCommInitRank) comm_init_rank;
  decltype(&ncclCommDestroy) comm_destroy;
  decltype(&ncclCommAbort) comm_abort;
  decltype(&ncclCommGetAsyncError) comm_get_async_error;
  decltype(&ncclGroupStart) group_start;
  decltype(&ncclGroupEnd) group_end;
  decltype(&ncclSend) send;
  decltype(&ncclRecv) recv;
  decltype(&ncclGetErrorString) error_string;
};

// The loaded API, or null with `why` set.
const NcclApi* Nccl(std::string* why) {
  static NcclApi api;
  static std::string error;
  static std::once_flag once;
  std::call_once(once, [] {
    void* lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* e = dlerror();
      error = std::string("NCCL could not be loaded (") + (e ? e : "libnccl.so.2") +
              "); install NCCL (libnccl2) or put it on LD_LIBRARY_PATH";
      return;
    }
    bool ok = true;
    auto take = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      if (fn == nullptr && ok) {
        error = std::string("libnccl.so.2 has no ") + name + "; install NCCL 2.7 or later";
        ok = false;
      }
    };
    take(api.get_unique_id, "ncclGetUniqueId");
    take(api.comm_init_rank, "ncclCommInitRank");
    take(api.comm_destroy, "ncclCommDestroy");
    take(api.comm_abort, "ncclCommAbort");
    take(api.comm_get_async_error, "ncclCommGetAsyncError");
    take(api.group_start, "ncclGroupStart");
    take(api.group_end, "ncclGroupEnd");
    take(api.send, "ncclSend");
    take(api.recv, "ncclRecv");
    take(api.error_string, "ncclGetErrorString");
  });
  if (!error.empty()) {
    if (why) *why = error;
    return nullptr;
  }
  return &api;
}

Status LinkLost() {
  return Status(StatusCode::kUnavailable, "the NCCL link failed earlier; restart the job");
}

Status CheckNccl(const NcclApi& api, ncclResult_t r, const std::string& what) {
  if (r == ncclSuccess) return Status::Ok();
  return Status(StatusCode::kUnavailable,
                "NCCL " + what + ": " + api.error_string(r) + "; restart the job");
}

}  // namespace

struct NcclLink::State {
  const NcclApi* api = nullptr;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t ready = nullptr;  // the device's stream, before the moves
  cudaEvent_t done = nullptr;   // the link's stream, after the last moves
  double timeout = 0;
  bool dead = false;
  std::vector<std::string> names;  // [ranks] "rank r on host"
  std::set<int> peers;             // of the moves queued since the last finished wait
};

std::string NcclLink::Unavailable() {
  std::string why;
  return Nccl(&why) ? "" : why;
}

StatusOr<std::string> NcclLink::NewId() {
  std::string why;
  const NcclApi* api = Nccl(&why);
  if (api == nullptr) return FailedPrecondition(why);
  ncclUniqueId id;
  MOE_RETURN_IF_ERROR(CheckNccl(*api, api->get_unique_id(&id), "ncclGetUniqueId"));
  return std::string(id.internal, sizeof(id.internal));
}

StatusOr<std::unique_ptr<NcclLink>> NcclLink::Open(const std::string& id, const Transport& t,
                                                   double timeout_seconds) {
  const int rank = t.rank(), ranks = t.size();
  std::string why;
  const NcclApi* api = Nccl(&why);
  if (api == nullptr) return FailedPrecondition(why);
  ncclUniqueId unique;
  if (id.size() != sizeof(unique.internal))
    return Internal("an NCCL id of " + std::to_string(id.size()) + " bytes reached rank " +
                    std::to_string(rank));
  std::memcpy(unique.internal, id.data(), sizeof(unique.internal));
  auto s = std::make_unique<State>();
  s->api = api;
  s->timeout = timeout_seconds;
  for (int r = 0; r < ranks; ++r)
    s->names.push_back("rank " + std::to_string(r) + " on " + t.host(r));
  // Every rank answered the Transport's last exchange just before this, so all of them are
  // here: the collective join does not wait on a lost rank. Nothing that can fail alone comes
  // before it, and what fails after it is reported to every rank by the Transport.
  MOE_RETURN_IF_ERROR(CheckNccl(*api, api->comm_init_rank(&s->comm, ranks, unique, rank),
                                "ncclCommInitRank on rank " + std::to_string(rank)));
  std::unique_ptr<NcclLink> link(new NcclLink(std::move(s)));
  State& made = *link->s_;
  MOE_RETURN_IF_ERROR(Check(cudaStreamCreateWithFlags(&made.stream, cudaStreamNonBlocking),
                            "cudaStreamCreate for the NCCL link"));
  MOE_RETURN_IF_ERROR(Check(cudaEventCreateWithFlags(&made.ready, cudaEventDisableTiming),
                            "cudaEventCreate"));
  MOE_RETURN_IF_ERROR(Check(cudaEventCreateWithFlags(&made.done, cudaEventDisableTiming),
                            "cudaEventCreate"));
  // NCCL connects two ranks at their first send and receive, blocking the host until both
  // are there: connect rank 0 with every worker now, under the deadline, rather than inside a
  // step where a failing rank would never come.
  MOE_ASSIGN_OR_RETURN(void* probe, gpu::Alloc(2 * ranks));
  std::vector<Move> out, in;
  for (int peer = 0; peer < ranks; ++peer)
    if (peer != rank && (rank == 0 || peer == 0)) {
      out.push_back({static_cast<char*>(probe) + peer, 1, peer});
      in.push_back({static_cast<char*>(probe) + ranks + peer, 1, peer});
    }
  const ExchangeLabel label{"connection"};
  constexpr auto kTimed = DeviceLink::Deadline::kRankTimeout;
  Status connected = rank == 0 ? link->Send(out, label, kTimed) : link->Receive(in, label);
  if (connected.ok())
    connected = rank == 0 ? link->Receive(in, label) : link->Send(out, label, kTimed);
  if (connected.ok()) connected = link->Wait(label, kTimed);
  if (!connected.ok()) link->Abort();
  gpu::Free(probe);
  MOE_RETURN_IF_ERROR(connected);
  return link;
}

NcclLink::NcclLink(std::unique_ptr<State> state) : s_(std::move(state)) {}

NcclLink::~NcclLink() {
  if (s_->comm) s_->api->comm_destroy(s_->comm);  // (Abort cleared a failed one)
  if (s_->done) cudaEventDestroy(s_->done);
  if (s_->ready) cudaEventDestroy(s_->ready);
  if (s_->stream) cudaStreamDestroy(s_->stream);
}

Status NcclLink::Queue(const std::vector<Move>& moves, bool send) {
  if (s_->dead) return LinkLost();
  const NcclApi& api = *s_->api;
  // The link's stream waits for what the device's stream holds so far (the rows to send, or
  // the end of reading the buffers a receive overwrites).
  MOE_RETURN_IF_ERROR(Check(cudaEventRecord(s_->ready, 0), "cudaEventRecord"));
  MOE_RETURN_IF_ERROR(Check(cudaStreamWaitEvent(s_->stream, s_->ready, 0), "cudaStreamWaitEvent"));
  MOE_RETURN_IF_ERROR(CheckNccl(api, api.group_start(), "ncclGroupStart"));
  Status status = Status::Ok();
  for (const Move& m : moves) {
    if (m.bytes == 0) continue;
    s_->peers.insert(m.peer);
    const size_t n = static_cast<size_t>(m.bytes);
    const ncclResult_t r = send ? api.send(m.data, n, ncclUint8, m.peer, s_->comm, s_->stream)
                                : api.recv(m.data, n, ncclUint8, m.peer, s_->comm, s_->stream);
    if (status.ok())
      status = CheckNccl(api, r, std::string(send ? "ncclSend to" : "ncclRecv from") + " rank " +
                                     std::to_string(m.peer));
  }
  // The group is closed even after a failed call, so NCCL's state stays whole.
  const ncclResult_t end = api.group_end();
  MOE_RETURN_IF_ERROR(status);
  MOE_RETURN_IF_ERROR(CheckNccl(api, end, "ncclGroupEnd"));
  MOE_RETURN_IF_ERROR(Check(cudaEventRecord(s_->done, s_->stream), "cudaEventRecord"));
  return Check(cudaStreamWaitEvent(0, s_->done, 0), "cudaStreamWaitEvent");
}

void NcclLink::Abort() {
  if (s_->comm) s_->api->comm_abort(s_->comm);
  s_->comm = nullptr;
  s_->dead = true;
}

Status NcclLink::Wait(const ExchangeLabel& label, Deadline deadline) {
  if (s_->dead) return LinkLost();
  const NcclApi& api = *s_->api;
  const std::string what = label.Text();
  const auto start = std::chrono::steady_clock::now();
  auto pause = std::chrono::microseconds(20);
  for (;;) {
    const cudaError_t e = cudaEventQuery(s_->done);
    if (e == cudaSuccess) {
      s_->peers.clear();
      return Status::Ok();
    }
    if (e != cudaErrorNotReady) {
      Abort();
      return Check(e, ("the NCCL " + what).c_str());
    }
    ncclResult_t async = ncclSuccess;
    api.comm_get_async_error(s_->comm, &async);
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (async != ncclSuccess || (deadline == Deadline::kRankTimeout && waited > s_->timeout)) {
      Abort();
      // The ranks of the moves queued since the last finished wait (NCCL does not say which).
      std::string with;
      for (int peer : s_->peers) with += (with.empty() ? " with " : ", ") + s_->names[peer];
      if (async != ncclSuccess)
        return CheckNccl(api, async, "failed in the " + what + " (moving bytes" + with + ")");
      char seconds[32];
      std::snprintf(seconds, sizeof(seconds), "%g", s_->timeout);
      return Status(StatusCode::kUnavailable,
                    "the NCCL link did not finish the " + what + " within " + seconds +
                        " s (--rank-timeout) while moving bytes" + with +
                        ": a rank died or hangs; restart the job, or raise --rank-timeout if it " +
                        "is only slow");
    }
    // Test and back off, so a waiting rank leaves the cores to the others.
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(1000));
  }
}

}  // namespace moe::gpu
