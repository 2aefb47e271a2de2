#include "common/safetensors.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace moe {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the reference implementation's limit
constexpr size_t kMaxRank = 8;

Status ParseEntry(const std::string& name, const nlohmann::json& v, uint64_t data_size,
                  const std::string& label, SafetensorsEntry* out) {
  const std::string where = label + ": tensor '" + name + "'";
  if (!v.is_object()) return DataLoss(where + ": header entry is not a JSON object");
  auto dtype = v.find("dtype");
  auto shape = v.find("shape");
  auto offsets = v.find("data_offsets");
  if (dtype == v.end() || !dtype->is_string())
    return DataLoss(where + ": missing or non-string 'dtype'");
  if (shape == v.end() || !shape->is_array()) return DataLoss(where + ": missing 'shape' array");
  if (offsets == v.end() || !offsets->is_array() || offsets->size() != 2)
    return DataLoss(where + ": 'data_offsets' must be an array of two integers");
  out->name = name;
  if (!ParseDType(dtype->get<std::string>(), &out->dtype))
    return InvalidArgument(where + ": dtype " + dtype->get<std::string>() +
                           " is not supported (supported: F32, F16, BF16)");
  if (shape->size() > kMaxRank) return DataLoss(where + ": shape has too many dimensions");
  uint64_t numel = 1;
  for (const auto& d : *shape) {
    if (!d.is_number_unsigned()) return DataLoss(where + ": shape entries must be integers >= 0");
    uint64_t n = d.get<uint64_t>();
    if (n > (1ull << 40) || (n != 0 && numel > (1ull << 50) / n))
      return DataLoss(where + ": shape is implausibly large");
    numel *= n;
    out->shape.push_back(static_cast<int64_t>(n));
  }
  for (const auto& o : *offsets)
    if (!o.is_number_unsigned()) return DataLoss(where + ": data_offsets must be integers >= 0");
  out->begin = (*offsets)[0].get<uint64_t>();
  out->end = (*offsets)[1].get<uint64_t>();
  if (out->end < out->begin) return DataLoss(where + ": data_offsets end before they begin");
  if (out->end > data_size)
    return DataLoss(where + ": data_offsets [" + std::to_string(out->begin) + ", " +
                    std::to_string(out->end) + ") run past the end of the data section (" +
                    std::to_string(data_size) + " bytes); the file is truncated or corrupt");
  if (out->end - out->begin != numel * DTypeSize(out->dtype))
    return DataLoss(where + ": byte range of " + std::to_string(out->end - out->begin) +
                    " bytes does not match shape and dtype (" +
                    std::to_string(numel * DTypeSize(out->dtype)) + " bytes)");
  return Status::Ok();
}

}  // namespace

StatusOr<SafetensorsHeader> ParseSafetensorsHeader(const uint8_t* bytes, size_t size,
                                                   const std::string& label) {
  if (size < 8) return DataLoss(label + ": file is shorter than the 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxHeaderBytes)
    return DataLoss(label + ": header length " + std::to_string(header_len) +
                    " is over the 100 MiB limit; the file is not a safetensors file");
  if (header_len > size - 8)
    return DataLoss(label + ": header length " + std::to_string(header_len) +
                    " runs past the end of the file (" + std::to_string(size) +
                    " bytes); the file is truncated or corrupt");
  const char* text = reinterpret_cast<const char*>(bytes + 8);
  nlohmann::json header = nlohmann::json::parse(text, text + header_len, nullptr, false);
  if (header.is_discarded()) return DataLoss(label + ": header is not valid JSON");
  if (!header.is_object()) return DataLoss(label + ": header is not a JSON object");

  SafetensorsHeader out;
  out.data_start = 8 + header_len;
  const uint64_t data_size = size - out.data_start;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    SafetensorsEntry entry;
    MOE_RETURN_IF_ERROR(ParseEntry(it.key(), it.value(), data_size, label, &entry));
    out.entries.push_back(std::move(entry));
  }
  std::sort(out.entries.begin(), out.entries.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  for (size_t i = 1; i < out.entries.size(); ++i) {
    if (out.entries[i].begin < out.entries[i - 1].end)
      return DataLoss(label + ": tensors '" + out.entries[i - 1].name + "' and '" +
                      out.entries[i].name + "' overlap in the data section");
  }
  return out;
}

}  // namespace moe
