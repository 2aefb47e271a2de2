// A Hugging Face checkpoint directory: model.safetensors, or shards listed by
// model.safetensors.index.json. Files are memory-mapped; tensors stay in their stored dtype.
//
// Loading accounts for every tensor: each one is either taken by this rank (Take) or declared
// owned elsewhere (Skip); Finish() reports any tensor nobody claimed.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/mapped_file.h"
#include "common/model_config.h"
#include "common/status.h"

namespace moe {

// A view of a tensor inside a mapped file. `data` lives as long as the Checkpoint.
struct TensorView {
  std::string name;
  std::string file;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t bytes = 0;
};

std::string ShapeString(const std::vector<int64_t>& shape);  // "[4096, 14336]"

class Checkpoint {
 public:
  static StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& model_dir);
  // Every tensor of `config` in bf16, made (randomly, see common/synthetic.h) when taken.
  static std::unique_ptr<Checkpoint> Synthetic(const ModelConfig& config);

  // All tensors, by name.
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }

  // The named tensor with exactly this shape (any supported dtype); marks it used.
  StatusOr<TensorView> Take(const std::string& name, const std::vector<int64_t>& shape);
  // Marks a tensor as owned by another rank: it must exist, it is not read here.
  Status Skip(const std::string& name);
  // Skips every tensor of `expected` that this rank did not take, checking it exists: the
  // tensors other ranks own (and check).
  Status SkipUnclaimed(const std::vector<std::pair<std::string, std::vector<int64_t>>>& expected);
  // Error naming the first tensors that were neither taken nor skipped.
  Status Finish() const;

  uint64_t taken_bytes() const { return taken_bytes_; }

  // Reads every page of the taken tensors into memory now (rather than on first use), calling
  // progress(done, total) in bytes along the way.
  void Prefault(const std::function<void(uint64_t, uint64_t)>& progress) const;

 private:
  Status AddFile(const std::string& dir, const std::string& file,
                 const std::map<std::string, std::string>* expected_names);

  std::string dir_;
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::vector<std::unique_ptr<uint16_t[]>> synthetic_;  // storage of made tensors
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, bool> claimed_;
  std::set<std::string> taken_;  // claimed by Take (read here), not by Skip
  uint64_t taken_bytes_ = 0;
};

}  // namespace moe
