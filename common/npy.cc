#include "common/npy.h"

#include <cstring>
#include <fstream>

#include "common/mapped_file.h"

namespace moe {

Status WriteNpy(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  std::string dims;
  int64_t count = 1;
  for (int64_t d : shape) {
    dims += std::to_string(d) + ", ";
    count *= d;
  }
  if (shape.size() > 1) dims.resize(dims.size() - 2);
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) return InvalidArgument(path + ": cannot open for writing");
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  out.put(static_cast<char>(len & 0xff));
  out.put(static_cast<char>(len >> 8));
  out << header;
  out.write(reinterpret_cast<const char*>(data), count * sizeof(float));
  if (!out) return Internal(path + ": write failed");
  return Status::Ok();
}

StatusOr<NpyArray> ReadNpy(const std::string& path) {
  MOE_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    return DataLoss(path + ": not a .npy file");
  const size_t len = static_cast<uint8_t>(bytes[8]) | static_cast<uint8_t>(bytes[9]) << 8;
  if (bytes[6] != 1 || 10 + len > bytes.size()) return DataLoss(path + ": unsupported .npy header");
  const std::string header = bytes.substr(10, len);
  if (header.find("'<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos)
    return DataLoss(path + ": only little-endian float32 C-order arrays are supported");
  NpyArray a;
  const size_t open = header.find('('), close = header.find(')');
  if (open == std::string::npos || close == std::string::npos) return DataLoss(path + ": no shape");
  int64_t count = 1;
  std::string dims = header.substr(open + 1, close - open - 1);
  size_t pos = 0;
  while (pos < dims.size()) {
    size_t comma = dims.find(',', pos);
    std::string part = dims.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (part.find_first_of("0123456789") != std::string::npos) {
      a.shape.push_back(std::stoll(part));
      count *= a.shape.back();
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (bytes.size() != 10 + len + count * sizeof(float))
    return DataLoss(path + ": data size does not match the shape");
  a.data.resize(count);
  std::memcpy(a.data.data(), bytes.data() + 10 + len, count * sizeof(float));
  return a;
}

}  // namespace moe
