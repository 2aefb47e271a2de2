#include "common/resident_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <utility>

namespace moe {
namespace {
constexpr size_t kHugePage = size_t{2} << 20;
}  // namespace

StatusOr<ResidentMemory> ResidentMemory::Allocate(size_t bytes) {
  ResidentMemory m;
  if (bytes == 0) return m;
  const size_t size = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  // Map one huge page more than needed and trim both ends to a 2 MiB boundary.
  void* raw = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
  if (raw == MAP_FAILED)
    return ResourceExhausted("cannot allocate " + std::to_string(bytes >> 20) +
                             " MiB for weights; use more ranks or a machine with more memory");
  const uintptr_t begin = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (begin + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned > begin) munmap(raw, aligned - begin);
  const uintptr_t end = begin + size + kHugePage;
  if (end > aligned + size) munmap(reinterpret_cast<void*>(aligned + size), end - aligned - size);
  m.data_ = reinterpret_cast<void*>(aligned);
  m.size_ = size;
  madvise(m.data_, m.size_, MADV_HUGEPAGE);  // advisory: 4 KiB pages still work without it
  return m;
}

ResidentMemory::~ResidentMemory() {
  if (data_ != nullptr) munmap(data_, size_);
}

ResidentMemory::ResidentMemory(ResidentMemory&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

ResidentMemory& ResidentMemory::operator=(ResidentMemory&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void ReleaseMappedPages(const void* p, size_t bytes) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace moe
