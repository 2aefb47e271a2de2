// The .npy format (version 1.0), float32 C-order arrays only.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace moe {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

Status WriteNpy(const std::string& path, const float* data, const std::vector<int64_t>& shape);
StatusOr<NpyArray> ReadNpy(const std::string& path);

}  // namespace moe
