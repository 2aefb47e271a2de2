// Anonymous memory for weights that stay resident, backed by 2 MiB pages where the kernel allows
// (madvise(MADV_HUGEPAGE)). Decode streams every weight once per token; with 4 KiB pages each
// page is a TLB miss and a point where the hardware prefetcher stops, which costs a fifth of a
// core's streaming rate on the machines we measured (see ARCHITECTURE.md).
#pragma once

#include <cstddef>

#include "common/status.h"

namespace moe {

class ResidentMemory {
 public:
  // `bytes` of zeroed memory, 2 MiB aligned. An error names the size when the system has none.
  static StatusOr<ResidentMemory> Allocate(size_t bytes);
  ResidentMemory() = default;
  ~ResidentMemory();
  ResidentMemory(ResidentMemory&& other) noexcept;
  ResidentMemory& operator=(ResidentMemory&& other) noexcept;
  ResidentMemory(const ResidentMemory&) = delete;
  ResidentMemory& operator=(const ResidentMemory&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;  // start of the mapping
  size_t size_ = 0;       // bytes mapped (a whole number of 2 MiB pages)
};

// Tells the kernel that a read-only file mapping's pages inside [p, p + bytes) are no longer
// needed by this process (after they were copied to resident memory).
void ReleaseMappedPages(const void* p, size_t bytes);

}  // namespace moe
