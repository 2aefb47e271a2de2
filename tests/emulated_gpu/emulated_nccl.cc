// NCCL on the emulated device (include/nccl.h), built as libnccl.so.2 and loaded by the
// emulated GPU path in place of NCCL, so common/cuda/nccl_link.cc runs where no GPU is. The
// ranks are processes on one machine: a move is a file in a directory the unique id names,
// "<from>.<to>.<n>" for the n-th move from one rank to the other (NCCL pairs a rank's sends to
// a peer with that peer's receives in the order both queued them).
//
// As on a GPU, a group is work on its stream: it starts once the stream's work before it is
// done (the events nccl_link.cc records), and is done once every receive has its bytes and
// every send has been taken by its receiver; until then later work on the stream waits. The
// link's stream runs by itself, as a GPU's would (device_queue.h: made streams). A receive
// whose sender moved another number of bytes fails the communicator (ncclCommGetAsyncError),
// as a mismatch may on a GPU; an aborted communicator's moves end unfinished.
#include <dirent.h>
#include <nccl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/emulated_gpu/device_queue.h"

struct ncclComm {
  std::string dir;
  int rank = 0, ranks = 0;
  std::vector<long> sent, received;  // [ranks] moves queued to and from each peer so far
  bool aborted = false;
  ncclResult_t error = ncclSuccess;  // what ncclCommGetAsyncError reports
};

namespace {

namespace emulated = moe::gpu::emulated;

struct Move {
  ncclComm* comm;
  bool send;
  char* data;
  size_t bytes;
  int peer;
  std::string path;  // the move's file
  bool done = false;
};

struct Group {
  int depth = 0;
  std::vector<Move> moves;
  cudaStream_t stream = nullptr;
};

Group& Pending() {
  static Group group;
  return group;
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

ncclResult_t Fail(ncclComm* comm, ncclResult_t why, const std::string& what) {
  std::fprintf(stderr, "emulated NCCL, rank %d: %s\n", comm ? comm->rank : -1, what.c_str());
  if (comm && comm->error == ncclSuccess) comm->error = why;
  return why;
}

// A rank that hangs, for the tests: MOE_EMULATED_NCCL_STOP="<rank>:join" stops that rank's
// process (SIGSTOP) as it joins a communicator, "<rank>:move" at its first send or receive
// (once: a rank continued goes on).
void StopIfAsked(int rank, const char* where) {
  static std::atomic<bool> stopped{false};
  const char* stop = std::getenv("MOE_EMULATED_NCCL_STOP");
  if (stop != nullptr && std::to_string(rank) + ":" + where == stop && !stopped.exchange(true))
    raise(SIGSTOP);
}

// The bytes of a send, in its file whole at once (written aside, then renamed).
void Post(Move& m) {
  const std::string aside = m.path + ".part";
  std::ofstream out(aside, std::ios::binary);
  out.write(m.data, static_cast<std::streamsize>(m.bytes));
  out.close();
  if (!out || std::rename(aside.c_str(), m.path.c_str()) != 0) {
    Fail(m.comm, ncclSystemError, "could not write " + m.path);
    m.done = true;
  }
}

// A receive takes its file once it is there; a send is done once its receiver took it.
void Poll(Move& m) {
  if (m.send) {
    m.done = !Exists(m.path);
    return;
  }
  std::ifstream in(m.path, std::ios::binary | std::ios::ate);
  if (!in) return;
  const auto size = static_cast<size_t>(in.tellg());
  if (size != m.bytes) {
    Fail(m.comm, ncclInvalidUsage,
         "rank " + std::to_string(m.peer) + " sent " + std::to_string(size) + " bytes (" +
             m.path + ") where " + std::to_string(m.bytes) + " were received");
  } else {
    in.seekg(0);
    in.read(m.data, static_cast<std::streamsize>(m.bytes));
    if (!in) Fail(m.comm, ncclSystemError, "could not read " + m.path);
  }
  in.close();
  std::remove(m.path.c_str());
  m.done = true;
}

// The group as work on its stream: sends posted when it starts, done when every move is.
void Queue(Group& group) {
  auto moves = std::make_shared<std::vector<Move>>(std::move(group.moves));
  group.moves.clear();
  auto started = std::make_shared<bool>(false);
  emulated::EnqueuePoll(emulated::QueueOf(group.stream), [moves, started] {
    bool done = true;
    for (Move& m : *moves) {
      if (m.comm->aborted) m.done = true;
      if (!*started && m.send && !m.done) Post(m);
      if (!m.done) Poll(m);
      done = done && m.done;
    }
    *started = true;
    return done;
  });
}

ncclResult_t Add(bool send, const void* data, size_t count, ncclDataType_t type, int peer,
                 ncclComm_t comm, cudaStream_t stream) {
  if (comm == nullptr) return ncclInvalidArgument;
  StopIfAsked(comm->rank, "move");
  auto hold = emulated::Hold();  // (the emulator's thread moves bytes for this communicator)
  if (type != ncclUint8 && type != ncclInt8)
    return Fail(comm, ncclInvalidArgument, "only bytes move here");
  if (peer < 0 || peer >= comm->ranks)
    return Fail(comm, ncclInvalidArgument, "no peer " + std::to_string(peer));
  Group& group = Pending();
  if (!group.moves.empty() && group.stream != stream)
    return Fail(comm, ncclInvalidUsage, "one group's moves on two streams");
  if (count == 0) return ncclSuccess;
  const int from = send ? comm->rank : peer, to = send ? peer : comm->rank;
  long& n = send ? comm->sent[peer] : comm->received[peer];
  const std::string path = comm->dir + "/" + std::to_string(from) + "." + std::to_string(to) +
                           "." + std::to_string(n++);
  group.moves.push_back({comm, send, static_cast<char*>(const_cast<void*>(data)), count, peer,
                         path});
  group.stream = stream;
  if (group.depth == 0) Queue(group);
  return ncclSuccess;
}

}  // namespace

extern "C" {

ncclResult_t ncclGetUniqueId(ncclUniqueId* unique_id) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/moe-emulated-nccl-XXXXXX";
  if (pattern.size() >= sizeof(unique_id->internal))
    return Fail(nullptr, ncclSystemError, "TMPDIR is too long for an id: " + pattern);
  if (mkdtemp(pattern.data()) == nullptr)
    return Fail(nullptr, ncclSystemError, "could not make " + pattern);
  std::memset(unique_id->internal, 0, sizeof(unique_id->internal));
  std::memcpy(unique_id->internal, pattern.data(), pattern.size());
  return ncclSuccess;
}

// Every rank at once: each leaves a mark, and waits for every other's, as NCCL's join does
// (for a minute at most here).
ncclResult_t ncclCommInitRank(ncclComm_t* comm, int ranks, ncclUniqueId id, int rank) {
  const std::string dir(id.internal, strnlen(id.internal, sizeof(id.internal)));
  if (ranks < 1 || rank < 0 || rank >= ranks || !Exists(dir))
    return Fail(nullptr, ncclInvalidArgument, "no communicator '" + dir + "' for rank " +
                                                  std::to_string(rank) + " of " +
                                                  std::to_string(ranks));
  StopIfAsked(rank, "join");
  std::ofstream(dir + "/joined." + std::to_string(rank)).put('1');
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < ranks; ++r)
    while (!Exists(dir + "/joined." + std::to_string(r))) {
      if (std::chrono::steady_clock::now() - start > std::chrono::minutes(1))
        return Fail(nullptr, ncclSystemError, "rank " + std::to_string(r) + " never joined");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  *comm = new ncclComm{dir, rank, ranks, std::vector<long>(ranks), std::vector<long>(ranks)};
  return ncclSuccess;
}

namespace {

// Takes away this rank's mark, and the directory once it is empty: moves sent to this rank
// and never taken stay, so their senders never finish, as on a GPU.
void Leave(const ncclComm& comm) {
  std::remove((comm.dir + "/joined." + std::to_string(comm.rank)).c_str());
  rmdir(comm.dir.c_str());
}

}  // namespace

// Moves still queued (none, after a wait) keep running; they hold the communicator, so it is
// never deleted.
ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (comm == nullptr) return ncclInvalidArgument;
  auto hold = emulated::Hold();
  Leave(*comm);
  return ncclSuccess;
}

// This rank's queued moves end at their next turn; its peers' moves with it never end, as on
// a GPU.
ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (comm == nullptr) return ncclInvalidArgument;
  auto hold = emulated::Hold();
  comm->aborted = true;
  Leave(*comm);
  return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async_error) {
  if (comm == nullptr) return ncclInvalidArgument;
  auto hold = emulated::Hold();
  *async_error = comm->error;
  return ncclSuccess;
}

ncclResult_t ncclGroupStart() {
  ++Pending().depth;
  return ncclSuccess;
}

ncclResult_t ncclGroupEnd() {
  Group& group = Pending();
  if (group.depth == 0) return ncclInvalidUsage;
  if (--group.depth == 0 && !group.moves.empty()) Queue(group);
  return ncclSuccess;
}

ncclResult_t ncclSend(const void* data, size_t count, ncclDataType_t type, int peer,
                      ncclComm_t comm, cudaStream_t stream) {
  return Add(true, data, count, type, peer, comm, stream);
}

ncclResult_t ncclRecv(void* data, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  return Add(false, data, count, type, peer, comm, stream);
}

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess:
      return "no error";
    case ncclSystemError:
      return "unhandled system error";
    case ncclInvalidArgument:
      return "invalid argument";
    case ncclInvalidUsage:
      return "invalid usage";
    default:
      return "internal error";
  }
}

}  // extern "C"
