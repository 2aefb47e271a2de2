#include "worker/expert_worker.h"

#include <chrono>
#include <cstring>

#include "common/wire_format.h"

namespace moe {

Status ExpertWorker::Process(int layer, int64_t step, int rows, const uint8_t* body,
                             int64_t body_bytes, std::vector<uint8_t>* reply) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t row_bytes = wire::RowBytes(K_, D_);
  if (body_bytes != rows * row_bytes)
    return Internal("dispatch for layer " + std::to_string(layer) + " holds " +
                    std::to_string(body_bytes) + " bytes, expected " +
                    std::to_string(rows * row_bytes));
  const std::vector<ExpertSlice>& slices = store_->layer(layer);
  auto meta = [&](int r) { return reinterpret_cast<const int32_t*>(body + r * row_bytes); };
  auto weights = [&](int r) { return reinterpret_cast<const float*>(meta(r) + 1 + K_); };
  auto hidden = [&](int r) { return weights(r) + K_; };
  auto find = [&](int expert) -> const ExpertSlice* {
    for (const ExpertSlice& s : slices)
      if (s.expert == expert) return &s;
    return nullptr;
  };

  // Output layout: one vector per row of whole experts, the slice's blocks for a sliced row.
  std::vector<int> first_vector(rows + 1, 0);
  for (int r = 0; r < rows; ++r) {
    const int n = meta(r)[0];
    if (n < 1 || n > K_) return Internal("dispatch row with " + std::to_string(n) + " experts");
    int vectors = 1;
    for (int j = 0; j < n; ++j) {
      const ExpertSlice* s = find(meta(r)[1 + j]);
      if (s == nullptr)
        return Internal("dispatch names expert " + std::to_string(meta(r)[1 + j]) +
                        ", which this rank does not hold");
      if (s->block_end - s->block_begin != store_->blocks()) {
        if (n != 1) return Internal("a sliced expert must travel alone in its row");
        vectors = s->block_end - s->block_begin;
      }
    }
    first_vector[r + 1] = first_vector[r] + vectors;
  }
  const int total_vectors = first_vector[rows];
  const size_t header_at = reply->size();
  reply->resize(header_at + sizeof(wire::ResultHeader) + int64_t{total_vectors} * D_ * 4, 0);
  float* out = reinterpret_cast<float*>(reply->data() + header_at + sizeof(wire::ResultHeader));
  std::fill(out, out + int64_t{total_vectors} * D_, 0.0f);

  // Gather each held slice's rows, run every slice once over its rows (all slices together),
  // then add the answers in expert-id order.
  const int S = static_cast<int>(slices.size());
  rows_.assign(S, {});
  weights_.assign(S, {});
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < meta(r)[0]; ++j)
      for (int si = 0; si < S; ++si)
        if (slices[si].expert == meta(r)[1 + j]) {
          rows_[si].push_back(r);
          weights_[si].push_back(weights(r)[j]);
          break;  // a rank holds one slice of an expert
        }
  // A device returns whole experts' outputs with their blocks summed: one vector per row.
  auto out_blocks = [&](const ExpertSlice& s) {
    const int blocks = s.block_end - s.block_begin;
    return device_ && blocks == store_->blocks() ? 1 : blocks;
  };
  std::vector<int64_t> x_at(S + 1, 0), p_at(S + 1, 0);
  for (int si = 0; si < S; ++si) {
    const int64_t n = static_cast<int64_t>(rows_[si].size());
    x_at[si + 1] = x_at[si] + n * D_;
    p_at[si + 1] = p_at[si] + n * D_ * out_blocks(slices[si]);
  }
  x_.resize(x_at[S]);
  partials_.resize(p_at[S]);
  std::vector<ExpertTask> tasks;
  std::vector<DeviceTask> device_tasks;
  for (int si = 0; si < S; ++si) {
    const int n = static_cast<int>(rows_[si].size());
    for (int i = 0; i < n; ++i)
      std::memcpy(&x_[x_at[si] + int64_t{i} * D_], hidden(rows_[si][i]), D_ * 4);
    if (n == 0) continue;
    tasks.push_back({&slices[si], &x_[x_at[si]], n, &partials_[p_at[si]]});
    device_tasks.push_back({si, &x_[x_at[si]], n, &partials_[p_at[si]]});
  }
  if (device_)
    MOE_RETURN_IF_ERROR(device_->Run(layer, device_tasks));
  else
    ExpertBlockPartials(tasks, store_->block_size(), scratch_, *pool_);

  for (int si = 0; si < S; ++si) {
    const ExpertSlice& s = slices[si];
    const int n = static_cast<int>(rows_[si].size());
    if (n == 0) continue;
    const int blocks = s.block_end - s.block_begin;
    const float* partials = &partials_[p_at[si]];
    if (blocks == store_->blocks()) {
      // Whole expert: sum its blocks, weight, add into the row's vector (id order).
      const float* sums = partials;
      if (out_blocks(s) > 1) {
        out_.resize(int64_t{n} * D_);
        SumBlocks(partials, blocks, int64_t{n} * D_, out_.data());
        sums = out_.data();
      }
      for (int i = 0; i < n; ++i) {
        float* v = out + int64_t{first_vector[rows_[si][i]]} * D_;
        const float w = weights_[si][i];
        for (int d = 0; d < D_; ++d) v[d] += w * sums[int64_t{i} * D_ + d];
      }
    } else {
      // Slice: its blocks' partial outputs, unweighted, in block order.
      for (int i = 0; i < n; ++i)
        for (int b = 0; b < blocks; ++b)
          std::memcpy(out + (int64_t{first_vector[rows_[si][i]]} + b) * D_,
                      &partials[(int64_t{b} * n + i) * D_], D_ * 4);
    }
  }

  wire::ResultHeader header;
  header.layer = layer;
  header.vectors = total_vectors;
  header.rows_received = rows;
  header.step = step;
  header.compute_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::memcpy(reply->data() + header_at, &header, sizeof(header));
  return Status::Ok();
}

}  // namespace moe
