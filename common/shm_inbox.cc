#include "common/shm_inbox.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <atomic>

namespace moe {
namespace {

constexpr uint64_t kMagic = 0x786f626e69656f6dull;  // "moeinbox"
constexpr size_t kHeader = 64;     // the magic; then the slots
constexpr size_t kSlotHeader = 64;  // a slot's number and size; then its bytes

static_assert(std::atomic_ref<uint64_t>::is_always_lock_free, "slots need lock-free atomics");

// Slot bytes rounded up to whole cache lines, so every slot header is aligned.
size_t Stride(int64_t slot_bytes) {
  return kSlotHeader + (static_cast<size_t>(slot_bytes) + 63) / 64 * 64;
}

uint8_t* Map(int fd, size_t size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  return p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
}

}  // namespace

size_t ShmInbox::Size(int senders, int64_t slot_bytes) {
  return kHeader + 2 * static_cast<size_t>(senders) * Stride(slot_bytes);
}

size_t ShmInbox::stride() const { return Stride(slot_bytes_); }

std::unique_ptr<ShmInbox> ShmInbox::Create(const std::string& name, int senders,
                                           int64_t slot_bytes) {
  if (senders < 1 || slot_bytes < 0) return nullptr;
  const int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) return nullptr;
  const size_t size = Size(senders, slot_bytes);
  // Reserved now: a tmpfs that fills up later would kill the process on first touch (SIGBUS).
  uint8_t* base = posix_fallocate(fd, 0, static_cast<off_t>(size)) == 0 ? Map(fd, size) : nullptr;
  close(fd);
  if (base == nullptr) {
    shm_unlink(name.c_str());
    return nullptr;
  }
  std::memset(base, 0, size);
  auto inbox = std::unique_ptr<ShmInbox>(new ShmInbox(name, base, senders, slot_bytes));
  std::memcpy(base, &kMagic, sizeof(kMagic));
  return inbox;
}

std::unique_ptr<ShmInbox> ShmInbox::Open(const std::string& name, int senders,
                                         int64_t slot_bytes) {
  if (senders < 1 || slot_bytes < 0) return nullptr;
  const int fd = shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) return nullptr;
  const size_t size = Size(senders, slot_bytes);
  struct stat st;
  uint8_t* base = fstat(fd, &st) == 0 && static_cast<size_t>(st.st_size) == size ? Map(fd, size)
                                                                                 : nullptr;
  close(fd);
  if (base == nullptr) return nullptr;
  uint64_t magic = 0;
  std::memcpy(&magic, base, sizeof(magic));
  if (magic != kMagic) {
    munmap(base, size);
    return nullptr;
  }
  return std::unique_ptr<ShmInbox>(new ShmInbox(name, base, senders, slot_bytes));
}

ShmInbox::~ShmInbox() { munmap(base_, Size(senders_, slot_bytes_)); }

void ShmInbox::Unlink() { shm_unlink(name_.c_str()); }

ShmInbox::Slot* ShmInbox::slot(int s, uint64_t seq) const {
  const size_t index = 2 * static_cast<size_t>(s) + seq % 2;
  return reinterpret_cast<Slot*>(base_ + kHeader + index * stride());
}

void ShmInbox::Put(int s, uint64_t seq, const uint8_t* data, int64_t bytes) {
  Slot* sl = slot(s, seq);
  if (bytes > 0)
    std::memcpy(reinterpret_cast<uint8_t*>(sl) + kSlotHeader, data, static_cast<size_t>(bytes));
  sl->bytes = bytes;
  std::atomic_ref<uint64_t>(sl->seq).store(seq, std::memory_order_release);
}

bool ShmInbox::Peek(int s, uint64_t seq, int64_t* bytes) const {
  Slot* sl = slot(s, seq);
  if (std::atomic_ref<uint64_t>(sl->seq).load(std::memory_order_acquire) != seq) return false;
  *bytes = sl->bytes;
  return true;
}

const uint8_t* ShmInbox::Data(int s, uint64_t seq) const {
  return reinterpret_cast<const uint8_t*>(slot(s, seq)) + kSlotHeader;
}

}  // namespace moe
