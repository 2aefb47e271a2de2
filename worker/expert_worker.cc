#include "worker/expert_worker.h"

#include <chrono>
#include <cstring>

#include "common/wire_format.h"

namespace moe {

Status ExpertWorker::Process(const wire::DispatchHeader& dispatch, const uint8_t* body,
                             int64_t body_bytes, std::vector<uint8_t>* reply) {
  const auto t0 = std::chrono::steady_clock::now();
  const int layer = dispatch.layer, rows = dispatch.rows;
  const bool link = dispatch.link != 0;
  if (link && (device_ == nullptr || !device_->linked()))
    return Internal("layer " + std::to_string(layer) + "'s rows were sent over a GPU link this "
                    "rank does not have");
  const int64_t row_bytes = wire::RowBytes(K_, link ? 0 : D_);
  if (body_bytes != rows * row_bytes)
    return Internal("dispatch for layer " + std::to_string(layer) + " holds " +
                    std::to_string(body_bytes) + " bytes, expected " +
                    std::to_string(rows * row_bytes));
  const std::vector<ExpertSlice>& slices = store_->layer(layer);
  auto meta = [&](int r) { return reinterpret_cast<const int32_t*>(body + r * row_bytes); };
  auto weights = [&](int r) { return reinterpret_cast<const float*>(meta(r) + 1 + K_); };
  auto hidden = [&](int r) { return weights(r) + K_; };
  auto blocks = [&](int si) { return slices[si].block_end - slices[si].block_begin; };
  auto whole = [&](int si) { return blocks(si) == store_->blocks(); };
  // A device returns whole experts' outputs with their blocks summed: one vector per row.
  auto out_blocks = [&](int si) { return device_ && whole(si) ? 1 : blocks(si); };

  // Each row's experts to the held slices (a rank holds one slice of an expert).
  const int S = static_cast<int>(slices.size());
  rows_.assign(S, {});
  slot_.assign(int64_t{rows} * K_, {-1, -1});
  for (int r = 0; r < rows; ++r) {
    const int n = meta(r)[0];
    if (n < 1 || n > K_) return Internal("dispatch row with " + std::to_string(n) + " experts");
    for (int j = 0; j < n; ++j) {
      const int expert = meta(r)[1 + j];
      int si = 0;
      while (si < S && slices[si].expert != expert) ++si;
      if (si == S)
        return Internal("dispatch names expert " + std::to_string(expert) +
                        ", which this rank does not hold");
      if (!whole(si) && n != 1) return Internal("a sliced expert must travel alone in its row");
      slot_[int64_t{r} * K_ + j] = {si, static_cast<int>(rows_[si].size())};
      rows_[si].push_back(r);
    }
  }
  // Each slice's outputs end to end: [out_blocks, n, D].
  std::vector<int64_t> x_at(S + 1, 0), p_at(S + 1, 0);
  for (int si = 0; si < S; ++si) {
    const int64_t n = static_cast<int64_t>(rows_[si].size());
    x_at[si + 1] = x_at[si] + n * D_;
    p_at[si + 1] = p_at[si] + n * D_ * out_blocks(si);
  }
  // The answers as a sum plan: per row of whole experts one vector, its experts' weighted
  // outputs added in id order (the row's experts are id-sorted); per sliced row its blocks'
  // partials unweighted, in block order.
  plan_.Clear();
  for (int r = 0; r < rows; ++r) {
    const auto [s0, i0] = slot_[int64_t{r} * K_];
    const int n_s0 = static_cast<int>(rows_[s0].size());
    if (!whole(s0)) {
      for (int b = 0; b < blocks(s0); ++b) {
        plan_.AddOutput();
        plan_.AddTerm(1.0f);
        plan_.AddSource(p_at[s0] + (int64_t{b} * n_s0 + i0) * D_);
      }
      continue;
    }
    plan_.AddOutput();
    for (int j = 0; j < meta(r)[0]; ++j) {
      const auto [si, i] = slot_[int64_t{r} * K_ + j];
      const int64_t n = static_cast<int64_t>(rows_[si].size());
      plan_.AddTerm(weights(r)[j]);
      for (int b = 0; b < out_blocks(si); ++b) plan_.AddSource(p_at[si] + (b * n + i) * D_);
    }
  }
  const int total_vectors = plan_.outputs();
  const size_t header_at = reply->size();
  reply->resize(header_at + sizeof(wire::ResultHeader) +
                (link ? 0 : int64_t{total_vectors} * D_ * 4));
  float* out = reinterpret_cast<float*>(reply->data() + header_at + sizeof(wire::ResultHeader));

  // Run every held slice once over its rows (all slices together), then the plan. The rows
  // are gathered per slice here, unless they come over the GPU link.
  if (!link) {
    x_.resize(x_at[S]);
    for (int si = 0; si < S; ++si)
      for (size_t i = 0; i < rows_[si].size(); ++i)
        std::memcpy(&x_[x_at[si] + static_cast<int64_t>(i) * D_], hidden(rows_[si][i]), D_ * 4);
  }
  if (device_) {
    DeviceJob job;
    job.layer = layer;
    job.step = dispatch.step;
    job.ping_pong = dispatch.micro_batches == 2;
    job.plan = &plan_;
    job.vectors = total_vectors;
    for (int si = 0; si < S; ++si) job.tasks.push_back({si, static_cast<int>(rows_[si].size())});
    if (link) {
      row_index_.clear();
      for (int si = 0; si < S; ++si)
        row_index_.insert(row_index_.end(), rows_[si].begin(), rows_[si].end());
      job.rows = rows;
      job.row_index = row_index_.data();
    } else {
      job.x = x_.data();
      job.out = out;
    }
    MOE_RETURN_IF_ERROR(device_->Run(job));
  } else {
    partials_.resize(p_at[S]);
    std::vector<ExpertTask> tasks;
    for (int si = 0; si < S; ++si)
      if (!rows_[si].empty())
        tasks.push_back({&slices[si], &x_[x_at[si]], static_cast<int>(rows_[si].size()),
                         &partials_[p_at[si]]});
    ExpertBlockPartials(tasks, store_->block_size(), scratch_, *pool_);
    ApplySumPlan(plan_, partials_.data(), D_, out);
  }

  wire::ResultHeader header;
  header.layer = layer;
  header.vectors = total_vectors;
  header.rows_received = rows;
  header.step = dispatch.step;
  header.compute_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::memcpy(reply->data() + header_at, &header, sizeof(header));
  return Status::Ok();
}

}  // namespace moe
