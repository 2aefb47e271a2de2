#include "common/doorbell.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>

namespace moe {
namespace {

// An abstract-namespace address: a leading NUL, then the name (no terminator).
socklen_t FillAddress(const std::string& name, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  const size_t n = std::min(name.size(), sizeof(addr->sun_path) - 1);
  std::memcpy(addr->sun_path + 1, name.data(), n);
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
}

}  // namespace

Doorbell::Doorbell(uint64_t job, int rank) : job_(job) {
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sockaddr_un addr;
  const socklen_t len = FillAddress(Address(rank), &addr);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    close(fd);
    return;
  }
  fd_ = fd;
}

Doorbell::~Doorbell() {
  if (fd_ >= 0) close(fd_);
}

std::string Doorbell::Address(int rank) const {
  char name[64];
  std::snprintf(name, sizeof(name), "moe-doorbell-%016llx-%d",
                static_cast<unsigned long long>(job_), rank);
  return name;
}

bool Doorbell::Ring(int rank) const {
  if (fd_ < 0) return false;
  sockaddr_un addr;
  const socklen_t len = FillAddress(Address(rank), &addr);
  const char byte = 0;
  // A full queue (EAGAIN) means rings wait for it already; other errors, that it is not here.
  return sendto(fd_, &byte, 1, MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&addr), len) == 1 ||
         errno == EAGAIN;
}

void Doorbell::Wait(std::chrono::microseconds timeout) const {
  const auto us = timeout.count();
  const timespec ts{static_cast<time_t>(us / 1000000), static_cast<long>(us % 1000000) * 1000};
  if (fd_ < 0) {
    nanosleep(&ts, nullptr);
    return;
  }
  pollfd p{fd_, POLLIN, 0};
  if (ppoll(&p, 1, &ts, nullptr) <= 0) return;
  char buf[64];
  while (recv(fd_, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
  }
}

}  // namespace moe
