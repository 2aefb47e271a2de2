#include "common/checkpoint.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "common/safetensors.h"
#include "common/synthetic.h"
#include "common/tensor_names.h"

namespace moe {
namespace {

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

}  // namespace

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& model_dir) {
  auto ckpt = std::unique_ptr<Checkpoint>(new Checkpoint());
  ckpt->dir_ = model_dir;
  const std::string index_path = model_dir + "/model.safetensors.index.json";
  if (FileExists(index_path)) {
    MOE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(index_path));
    nlohmann::json index = nlohmann::json::parse(text, nullptr, false);
    if (index.is_discarded() || !index.is_object())
      return DataLoss(index_path + ": not a valid JSON object");
    auto map = index.find("weight_map");
    if (map == index.end() || !map->is_object() || map->empty())
      return DataLoss(index_path + ": missing or empty 'weight_map'");
    std::map<std::string, std::map<std::string, std::string>> by_file;
    for (auto it = map->begin(); it != map->end(); ++it) {
      if (!it.value().is_string())
        return DataLoss(index_path + ": weight_map entry '" + it.key() + "' is not a file name");
      const std::string file = it.value().get<std::string>();
      if (file.empty() || file.find('/') != std::string::npos || file[0] == '.')
        return DataLoss(index_path + ": weight_map names file '" + file +
                        "', which is not a plain file name in the model directory");
      by_file[file][it.key()] = file;
    }
    for (const auto& [file, names] : by_file)
      MOE_RETURN_IF_ERROR(ckpt->AddFile(model_dir, file, &names));
  } else if (FileExists(model_dir + "/model.safetensors")) {
    MOE_RETURN_IF_ERROR(ckpt->AddFile(model_dir, "model.safetensors", nullptr));
  } else {
    return NotFound(model_dir + ": no model.safetensors or model.safetensors.index.json; "
                    "point --model at a Hugging Face checkpoint directory");
  }
  for (const auto& [name, view] : ckpt->tensors_) ckpt->claimed_[name] = false;
  return ckpt;
}

Status Checkpoint::AddFile(const std::string& dir, const std::string& file,
                           const std::map<std::string, std::string>* expected_names) {
  const std::string path = dir + "/" + file;
  MOE_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, MappedFile::Open(path));
  MOE_ASSIGN_OR_RETURN(SafetensorsHeader header,
                       ParseSafetensorsHeader(mapped->data(), mapped->size(), path));
  std::set<std::string> seen;
  for (const SafetensorsEntry& e : header.entries) {
    if (expected_names != nullptr && expected_names->count(e.name) == 0)
      return DataLoss(path + ": tensor '" + e.name +
                      "' is not listed for this file in model.safetensors.index.json");
    if (tensors_.count(e.name) != 0)
      return DataLoss(path + ": tensor '" + e.name + "' also appears in " + tensors_[e.name].file);
    TensorView v;
    v.name = e.name;
    v.file = path;
    v.dtype = e.dtype;
    v.shape = e.shape;
    v.data = mapped->data() + header.data_start + e.begin;
    v.bytes = e.end - e.begin;
    tensors_[e.name] = std::move(v);
    seen.insert(e.name);
  }
  if (expected_names != nullptr) {
    for (const auto& [name, f] : *expected_names)
      if (seen.count(name) == 0)
        return DataLoss(path + ": tensor '" + name +
                        "' is listed in model.safetensors.index.json but missing from the file");
  }
  files_.push_back(std::move(mapped));
  return Status::Ok();
}

std::unique_ptr<Checkpoint> Checkpoint::Synthetic(const ModelConfig& config) {
  auto ckpt = std::unique_ptr<Checkpoint>(new Checkpoint());
  ckpt->dir_ = "synthetic";
  for (const auto& [name, shape] : names::AllTensors(config)) {
    TensorView v;
    v.name = name;
    v.file = "synthetic";
    v.dtype = DType::kBF16;
    v.shape = shape;
    v.bytes = 2;
    for (int64_t d : shape) v.bytes *= d;
    ckpt->tensors_[name] = v;
    ckpt->claimed_[name] = false;
  }
  return ckpt;
}

StatusOr<TensorView*> Checkpoint::Find(const std::string& name,
                                       const std::vector<int64_t>& shape) {
  auto it = tensors_.find(name);
  if (it == tensors_.end())
    return NotFound(dir_ + ": tensor '" + name + "' is missing from the checkpoint");
  TensorView& t = it->second;
  if (t.shape != shape)
    return FailedPrecondition(t.file + ": tensor '" + name + "' has shape " +
                              ShapeString(t.shape) + " but config.json implies " +
                              ShapeString(shape));
  return &t;
}

void Checkpoint::Count(uint64_t bytes) {
  constexpr int kReportShift = 26;  // report every 64 MiB
  if (progress_ && (taken_bytes_ + bytes) >> kReportShift != taken_bytes_ >> kReportShift)
    progress_(taken_bytes_ + bytes);
  taken_bytes_ += bytes;
}

namespace {

// Synthetic tensors are made when taken: norms 1, embeddings std 1, matrices std 1/sqrt(fan in).
void MakeSynthetic(const TensorView& t, uint16_t* out) {
  const int64_t n = static_cast<int64_t>(t.bytes / 2);
  if (t.shape.size() == 1)
    std::fill(out, out + n, F32ToBf16(1.0f));
  else
    FillSynthetic(t.name, t.name == names::Embed() ? 1.0f : 1.0f / std::sqrt(static_cast<float>(t.shape[1])),
                  out, n);
}

}  // namespace

StatusOr<TensorView> Checkpoint::Take(const std::string& name, const std::vector<int64_t>& shape) {
  MOE_ASSIGN_OR_RETURN(TensorView * found, Find(name, shape));
  TensorView& t = *found;
  if (taken_.count(name) == 0) {
    MOE_ASSIGN_OR_RETURN(ResidentMemory copy, ResidentMemory::Allocate(t.bytes));
    if (t.file == "synthetic") {
      MakeSynthetic(t, static_cast<uint16_t*>(copy.data()));
    } else {
      std::memcpy(copy.data(), t.data, t.bytes);
      ReleaseMappedPages(t.data, t.bytes);
    }
    t.data = copy.data();
    resident_.push_back(std::move(copy));
    Count(t.bytes);
  }
  claimed_[name] = true;
  taken_.insert(name);
  return t;
}

StatusOr<Matrix> Checkpoint::TakeMatrix(const std::string& name, const std::vector<int64_t>& shape,
                                        int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  MOE_ASSIGN_OR_RETURN(TensorView * found, Find(name, shape));
  const TensorView& t = *found;
  MOE_CHECK(shape.size() == 2, "TakeMatrix of a 2-D tensor");
  if (r1 < 0) r1 = shape[0];
  if (c1 < 0) c1 = shape[1];
  MOE_CHECK(0 <= r0 && r0 <= r1 && r1 <= shape[0] && 0 <= c0 && c0 <= c1 && c1 <= shape[1],
            "TakeMatrix range inside the tensor");
  const int64_t rows = r1 - r0, cols = c1 - c0, size = DTypeSize(t.dtype);
  MOE_ASSIGN_OR_RETURN(ResidentMemory copy,
                       ResidentMemory::Allocate(std::max<int64_t>(PanelElements(rows, cols) * size, 1)));
  // Until Take copies it, t.data is the file mapping (or nothing, for a synthetic tensor).
  const bool in_file = taken_.count(name) == 0;
  std::vector<uint16_t> made;  // a synthetic tensor, whole (its values depend on the position)
  const void* src = t.data;
  if (in_file && t.file == "synthetic") {
    made.resize(t.bytes / 2);
    MakeSynthetic(t, made.data());
    src = made.data();
  }
  PackPanels(src, t.dtype, shape[1], r0, r1, c0, c1, copy.data());
  if (in_file && t.file != "synthetic") ReleaseMappedPages(t.data, t.bytes);
  Matrix m{copy.data(), t.dtype, rows, cols, 0, 16 * cols};
  resident_.push_back(std::move(copy));
  Count(rows * cols * size);
  claimed_[name] = true;
  return m;
}

Status Checkpoint::Read(const std::string& name, const std::vector<int64_t>& shape,
                        uint64_t counted_bytes,
                        const std::function<Status(const TensorView&)>& use) {
  MOE_ASSIGN_OR_RETURN(TensorView * found, Find(name, shape));
  const bool in_file = taken_.count(name) == 0;
  TensorView view = *found;
  std::vector<uint16_t> made;
  if (in_file && view.file == "synthetic") {
    made.resize(view.bytes / 2);
    MakeSynthetic(view, made.data());
    view.data = made.data();
  }
  MOE_RETURN_IF_ERROR(use(view));
  if (in_file && view.file != "synthetic") ReleaseMappedPages(view.data, view.bytes);
  Count(counted_bytes);
  claimed_[name] = true;
  return Status::Ok();
}

Status Checkpoint::Skip(const std::string& name) {
  auto it = claimed_.find(name);
  if (it == claimed_.end())
    return NotFound(dir_ + ": tensor '" + name + "' is missing from the checkpoint");
  it->second = true;
  return Status::Ok();
}

Status Checkpoint::Claim(const std::string& name, const std::vector<int64_t>& shape) {
  MOE_RETURN_IF_ERROR(Find(name, shape).status());
  claimed_[name] = true;
  return Status::Ok();
}

Status Checkpoint::SkipUnclaimed(
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& expected) {
  for (const auto& [name, shape] : expected) {
    if (claimed_.count(name) && claimed_[name]) continue;
    // Only existence: the rank that owns a tensor checks its shape and names itself.
    if (tensors_.count(name) == 0)
      return NotFound(dir_ + ": tensor '" + name + "' is missing from the checkpoint");
    claimed_[name] = true;
  }
  return Status::Ok();
}

Status Checkpoint::Finish() const {
  std::string unknown;
  int count = 0;
  for (const auto& [name, claimed] : claimed_) {
    if (claimed) continue;
    if (count < 5) unknown += (count ? ", " : "") + ("'" + name + "'");
    ++count;
  }
  if (count == 0) return Status::Ok();
  return FailedPrecondition(dir_ + ": " + std::to_string(count) +
                            " tensor(s) in the checkpoint are not part of the model described "
                            "by config.json: " + unknown +
                            (count > 5 ? ", ..." : "") +
                            "; check that config.json matches the weights");
}

}  // namespace moe
