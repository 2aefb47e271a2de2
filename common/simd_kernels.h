// One instruction set's table of kernels (common/kernels_isa.h), from its 16-lane vector type
// `V` and its matmul tiling `Kernel` (an Entry of common/simd_matmul.h). Include only inside an
// anonymous namespace of a kernels_*.cc, after defining V: it brings in the kernels themselves.
#include "common/simd_activation.h"
#include "common/simd_matmul.h"

template <typename Kernel, typename V>
Kernels KernelTable(Isa isa, const char* name) {
  return {isa, name, Kernel::MatMulPanels, Kernel::kGroupPanels, Kernel::kDecodeGroupPanels,
          DotT<V>, AxpyT<V>, SiluMulT<V>};
}
