// Parsing and validation of one .safetensors file:
//   [8-byte little-endian header length N][N bytes of JSON header][data section]
// The header maps tensor name -> {dtype, shape, data_offsets [begin, end) into the data section}.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"

namespace moe {

struct SafetensorsEntry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offset into the data section
  uint64_t end = 0;
};

struct SafetensorsHeader {
  uint64_t data_start = 0;                // 8 + header length: where the data section begins
  std::vector<SafetensorsEntry> entries;  // sorted by begin offset
};

// Validates everything a corrupt file can get wrong: length past the end of the file, bad JSON,
// unknown dtype, negative or overflowing shapes, a byte range that disagrees with the shape,
// offsets out of range or overlapping. `label` names the file in error messages.
StatusOr<SafetensorsHeader> ParseSafetensorsHeader(const uint8_t* bytes, size_t size,
                                                   const std::string& label);

}  // namespace moe
