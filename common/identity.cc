#include "common/identity.h"

#include "common/mapped_file.h"

namespace moe {

uint64_t Fnv1a(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

uint64_t BinaryFingerprint() {
  auto exe = MappedFile::Open("/proc/self/exe");
  if (!exe.ok()) return 0;
  return Fnv1a((*exe)->data(), (*exe)->size());
}

uint64_t ModelFingerprint(const std::string& config_json, const Checkpoint& ckpt) {
  uint64_t h = Fnv1a(config_json.data(), config_json.size());
  for (const auto& [name, t] : ckpt.tensors()) {
    h = Fnv1a(name.data(), name.size(), h);
    const char* dtype = DTypeName(t.dtype);
    h = Fnv1a(dtype, 4, h);
    h = Fnv1a(t.shape.data(), t.shape.size() * sizeof(int64_t), h);
  }
  return h;
}

uint64_t PlacementFingerprint(const Placement& placement) {
  uint64_t h = Fnv1a(nullptr, 0);
  for (const auto& held : placement.by_rank) {
    const int64_t n = static_cast<int64_t>(held.size());
    h = Fnv1a(&n, sizeof(n), h);
    for (const ExpertAssignment& a : held) {
      const int64_t fields[] = {a.expert, a.block_begin, a.block_end};
      h = Fnv1a(fields, sizeof(fields), h);
    }
  }
  return h;
}

}  // namespace moe
