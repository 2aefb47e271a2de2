// A Hugging Face checkpoint directory: model.safetensors, or shards listed by
// model.safetensors.index.json. Files are memory-mapped to read their headers and for `inspect`;
// a tensor this rank takes is copied into resident memory on 2 MiB pages (common/
// resident_memory.h), in its stored dtype.
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
#include "common/kernels.h"
#include "common/mapped_file.h"
#include "common/model_config.h"
#include "common/resident_memory.h"
#include "common/status.h"

namespace moe {

// A view of a tensor: in its mapped file, or once taken, in resident memory. `data` lives as
// long as the Checkpoint.
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

  // The named tensor with exactly this shape (any supported dtype), read into resident memory
  // (once; later calls return the same copy); marks it used.
  StatusOr<TensorView> Take(const std::string& name, const std::vector<int64_t>& shape);
  // Rows [r0, r1) and columns [c0, c1) (-1: to the end) of the named 2-D tensor with exactly
  // this shape, copied into resident memory in panels for MatMul (common/kernels.h), in its
  // stored dtype. Each call makes its own copy (a rank takes only its slice of an expert);
  // marks the tensor used.
  StatusOr<Matrix> TakeMatrix(const std::string& name, const std::vector<int64_t>& shape,
                              int64_t r0 = 0, int64_t r1 = -1, int64_t c0 = 0, int64_t c1 = -1);
  // Hands the named tensor with exactly this shape to `use` where it lies, without a resident
  // copy: in its file mapping (or values made for the call, for a synthetic tensor; or the
  // resident copy, once taken). For loading onto a device. Marks it used and counts
  // `counted_bytes` (what `use` reads of it) towards the progress.
  Status Read(const std::string& name, const std::vector<int64_t>& shape, uint64_t counted_bytes,
              const std::function<Status(const TensorView&)>& use);
  // Marks a tensor as owned by another rank: it must exist, it is not read here.
  Status Skip(const std::string& name);
  // Marks the named tensor with exactly this shape as used without reading it (`moe inspect`).
  Status Claim(const std::string& name, const std::vector<int64_t>& shape);
  // Skips every tensor of `expected` that this rank did not take, checking it exists: the
  // tensors other ranks own (and check).
  Status SkipUnclaimed(const std::vector<std::pair<std::string, std::vector<int64_t>>>& expected);
  // Error naming the first tensors that were neither taken nor skipped.
  Status Finish() const;

  uint64_t taken_bytes() const { return taken_bytes_; }

  // Called with the bytes taken so far, every 64 MiB read.
  void set_progress(std::function<void(uint64_t)> progress) { progress_ = std::move(progress); }

 private:
  // Finds `name` and checks its shape.
  StatusOr<TensorView*> Find(const std::string& name, const std::vector<int64_t>& shape);
  // Adds `bytes` to the bytes taken, reporting progress on every 64 MiB crossed.
  void Count(uint64_t bytes);
  Status AddFile(const std::string& dir, const std::string& file,
                 const std::map<std::string, std::string>* expected_names);

  std::string dir_;
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::vector<ResidentMemory> resident_;  // the taken tensors' bytes (read or made)
  std::function<void(uint64_t)> progress_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, bool> claimed_;
  std::set<std::string> taken_;  // claimed by Take (read here), not by Skip
  uint64_t taken_bytes_ = 0;
};

}  // namespace moe
