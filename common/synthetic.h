// Synthetic models at the real shapes, for benchmarks: a config preset and random bf16 weights
// generated on the rank that takes them (each tensor from a seed derived from its name, so
// every rank sees the same values without any file).
#pragma once

#include <string>

#include "common/model_config.h"
#include "common/status.h"

namespace moe {

// mistral-7b, mixtral-8x7b, mixtral-8x22b, and bench-1b (hidden 1024, ffn 3584, 8 layers,
// vocab 32000, 8 experts: beyond any last-level cache, quick to make). layers > 0 cuts depth.
StatusOr<ModelConfig> SyntheticPreset(const std::string& name, int layers);
std::string SyntheticPresetNames();

// Fills `n` bf16 values for the tensor `name`: uniform with the standard deviation `std`.
void FillSynthetic(const std::string& name, float std, uint16_t* out, int64_t n);

}  // namespace moe
