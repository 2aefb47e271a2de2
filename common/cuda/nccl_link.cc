#include "common/cuda/nccl_link.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
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

// "<what> did not finish within 3 s (--rank-timeout)<where>: a rank died or hangs; ...".
Status Overran(const std::string& what, double timeout, const std::string& where) {
  return Status(StatusCode::kUnavailable,
                what + " did not finish within " + SecondsText(timeout) + " s (--rank-timeout)" +
                    where +
                    ": a rank died or hangs; restart the job, or raise --rank-timeout if it is "
                    "only slow");
}

// How far an opening link has gone, shared by Open and the thread that opens it.
class Opening {
 public:
  // The opening starts `what` ("NCCL's join (ncclCommInitRank)").
  void Now(std::string what) {
    std::lock_guard<std::mutex> lock(mu_);
    doing_ = std::move(what);
    ++steps_;
    changed_.notify_all();
  }
  void Finish(Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = std::move(status);
    finished_ = true;
    changed_.notify_all();
  }
  // Waits until the opening finishes, giving each of its steps at most `timeout` seconds.
  // False when a step did not finish in time, with `*late` naming it.
  bool Await(double timeout, Status* status, std::string* late) {
    std::unique_lock<std::mutex> lock(mu_);
    while (!finished_) {
      const int steps = steps_;
      if (!changed_.wait_for(lock, std::chrono::duration<double>(timeout),
                             [&] { return finished_ || steps_ != steps; })) {
        *late = doing_;
        return false;
      }
    }
    *status = status_;
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::string doing_ = "the NCCL link's opening";
  int steps_ = 0;
  bool finished_ = false;
  Status status_;
};

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
  if (id.size() != sizeof(ncclUniqueId::internal))
    return Internal("an NCCL id of " + std::to_string(id.size()) + " bytes reached rank " +
                    std::to_string(rank));
  auto s = std::make_unique<State>();
  s->api = api;
  s->timeout = timeout_seconds;
  for (int r = 0; r < ranks; ++r)
    s->names.push_back("rank " + std::to_string(r) + " on " + t.host(r));
  // NCCL's join waits for every rank, and its first move between two ranks may block the
  // host until both are there, with no deadline of their own. So both run on a thread of
  // their own, and this one gives each step the rank timeout. A step that overruns leaves the
  // link to its thread (a rank died or hangs, and the caller ends the job).
  auto opening = std::make_shared<Opening>();
  auto* link = new NcclLink(std::move(s));
  std::thread([link, opening, id, device = gpu::CurrentDevice(), rank, ranks] {
    Status status = gpu::SetDevice(device);
    if (status.ok())
      status = link->JoinAndConnect(id, rank, ranks,
                                    [&](std::string what) { opening->Now(std::move(what)); });
    opening->Finish(std::move(status));
  }).detach();
  Status opened;
  std::string late;
  if (!opening->Await(timeout_seconds, &opened, &late))
    return Overran(late, timeout_seconds,
                   ", seen from rank " + std::to_string(rank) + " on " + t.host(rank));
  std::unique_ptr<NcclLink> owned(link);
  // Any failure here leaves other ranks in a step of the opening: the caller must end the job.
  if (!opened.ok()) return Status(StatusCode::kUnavailable, opened.message());
  return owned;
}

Status NcclLink::JoinAndConnect(const std::string& id, int rank, int ranks,
                                const std::function<void(std::string)>& now) {
  State& s = *s_;
  ncclUniqueId unique;
  std::memcpy(unique.internal, id.data(), sizeof(unique.internal));
  now("NCCL's join (ncclCommInitRank)");
  MOE_RETURN_IF_ERROR(CheckNccl(*s.api, s.api->comm_init_rank(&s.comm, ranks, unique, rank),
                                "ncclCommInitRank on rank " + std::to_string(rank)));
  Status connected = Connect(rank, ranks, now);
  if (!connected.ok()) Abort();  // (local: the others' steps end on their deadlines)
  return connected;
}

Status NcclLink::Connect(int rank, int ranks, const std::function<void(std::string)>& now) {
  State& s = *s_;
  MOE_RETURN_IF_ERROR(Check(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking),
                            "cudaStreamCreate for the NCCL link"));
  MOE_RETURN_IF_ERROR(Check(cudaEventCreateWithFlags(&s.ready, cudaEventDisableTiming),
                            "cudaEventCreate"));
  MOE_RETURN_IF_ERROR(Check(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming),
                            "cudaEventCreate"));
  // Rank 0 connects with every worker at once (a byte each way), so that no step of a run
  // waits on a connection.
  MOE_ASSIGN_OR_RETURN(void* probe, gpu::Alloc(2 * ranks));
  std::vector<Move> out, in;
  for (int peer = 0; peer < ranks; ++peer)
    if (peer != rank && (rank == 0 || peer == 0)) {
      out.push_back({static_cast<char*>(probe) + peer, 1, peer});
      in.push_back({static_cast<char*>(probe) + ranks + peer, 1, peer});
    }
  now(rank == 0 ? "NCCL's connection with the workers"
                : "NCCL's connection with " + s.names[0]);
  const ExchangeLabel label{"connection"};
  // (Open's deadline holds this step: the link's own would end it at the same time.)
  constexpr auto kNone = Deadline::kNone;
  Status connected = rank == 0 ? Send(out, label, kNone) : Receive(in, label);
  if (connected.ok()) connected = rank == 0 ? Receive(in, label) : Send(out, label, kNone);
  if (connected.ok()) connected = Wait(label, kNone);
  gpu::Free(probe);
  return connected;
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
    // "Not yet" is no error, but the runtime keeps it as this thread's last one, which the
    // next kernel launch's check would read as its own failure.
    cudaGetLastError();
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
      return Overran("the NCCL link's " + what, s_->timeout, " while moving bytes" + with);
    }
    // Test and back off, so a waiting rank leaves the cores to the others.
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(1000));
  }
}

}  // namespace moe::gpu
