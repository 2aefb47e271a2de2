#include "coordinator/expert_parallel.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "common/activity.h"
#include "common/check.h"
#include "common/wire_format.h"

namespace moe {
namespace {

double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

template <typename T>
void Append(std::vector<uint8_t>& buf, const T* data, size_t count) {
  const auto* p = reinterpret_cast<const uint8_t*>(data);
  buf.insert(buf.end(), p, p + count * sizeof(T));
}

}  // namespace

ExpertParallel::ExpertParallel(const ModelConfig& config, const Placement* placement,
                               Transport* transport, ExpertWorker* local,
                               double rank_timeout_seconds, RunStats* stats)
    : config_(config),
      placement_(placement),
      transport_(transport),
      local_(local),
      timeout_(rank_timeout_seconds),
      stats_(stats) {}

Status ExpertParallel::Fail(Status s) {
  broken_ = true;
  return s;
}

int64_t ExpertParallel::MaxTokensPerStep() const {
  const int K = config_.is_moe() ? config_.experts_per_token : 1, D = config_.hidden;
  size_t owners = 1;
  int vectors = 1;
  for (int e = 0; e < placement_->experts; ++e) {
    owners = std::max(owners, placement_->by_expert[e].size());
    if (!placement_->whole(e)) vectors = placement_->blocks;
  }
  // Per token, at worst: K rows to each owner of an expert, and K x vectors answers of D floats.
  const int64_t dispatch = int64_t{K} * static_cast<int64_t>(owners) * wire::RowBytes(K, D);
  const int64_t combine = int64_t{K} * vectors * D * 4;
  const int64_t limit = (int64_t{1} << 31) - (int64_t{1} << 20);  // headers and slack
  return limit / std::max(dispatch, combine);
}

void ExpertParallel::Attending(int layer) const { SetActivity({"attention", layer, step_}); }

StatusOr<DispatchHandle> ExpertParallel::Dispatch(int layer, int micro, int micros,
                                                  const float* h, int T, const Routes& routes) {
  if (broken_) return Status(StatusCode::kUnavailable, "a rank was lost earlier; restart the job");
  if (T > MaxTokensPerStep())
    return InvalidArgument("a step of " + std::to_string(T) + " tokens is more than one exchange "
                           "can carry here (" + std::to_string(MaxTokensPerStep()) +
                           "); lower --prefill-chunk or --max-batch-tokens");
  const auto t0 = std::chrono::steady_clock::now();
  const int R = transport_->size(), K = routes.k, D = config_.hidden, E = placement_->experts;
  DispatchHandle handle;
  handle.layer = layer;
  handle.step = step_;
  handle.tokens = T;
  handle.routes = &routes;
  handle.segments.assign(T, {});
  handle.expected_vectors.assign(R, 0);
  handle.rows_sent.assign(R, 0);
  handle.rank_tokens.assign(R, {});
  handle.link = h == nullptr;
  replica_counter_.assign(E, 0);

  // Plan: each token's experts in id order, cut into runs of whole experts on one rank, and one
  // segment per owner of a sliced expert. Replicas take an expert's tokens in turn.
  std::vector<std::vector<int>> rows_for(R);  // [rank] -> segment ids (token * K + piece)
  std::vector<int> chosen(K);
  for (int t = 0; t < T; ++t) {
    const int* experts = &routes.expert[int64_t{t} * K];
    for (int j = 0; j < K; ++j) {
      const int e = experts[j];
      MOE_CHECK(e >= 0 && e < E, "routed expert out of range");
      const auto& owners = placement_->by_expert[e];
      chosen[j] = placement_->whole(e) ? owners[replica_counter_[e]++ % owners.size()].rank : -1;
    }
    auto& segs = handle.segments[t];
    for (int j = 0; j < K;) {
      const int e = experts[j];
      if (chosen[j] >= 0) {
        // A run comes back as one pre-summed vector, which combine adds to zero: that keeps the
        // id order only when the run starts at the token's first expert.
        int n = 1;
        while (j == 0 && j + n < K && chosen[j + n] == chosen[j]) ++n;
        segs.push_back({chosen[j], j, n, 1, handle.expected_vectors[chosen[j]]});
        handle.expected_vectors[chosen[j]] += 1;
        j += n;
      } else {
        for (const Owner& o : placement_->by_expert[e]) {
          const int v = o.block_end - o.block_begin;
          segs.push_back({o.rank, j, 1, v, handle.expected_vectors[o.rank]});
          handle.expected_vectors[o.rank] += v;
        }
        ++j;
      }
    }
  }

  if (stats_) stats_->CountRoutes(layer, routes.expert);

  // Pack: per rank a header, then its rows in token order.
  send_.data.clear();
  send_.counts.assign(R, 0);
  std::vector<std::vector<std::pair<int, int>>> per_rank(R);  // (token, segment index)
  for (int t = 0; t < T; ++t)
    for (int s = 0; s < static_cast<int>(handle.segments[t].size()); ++s)
      per_rank[handle.segments[t][s].rank].push_back({t, s});
  const std::vector<int32_t> zero_ids(K, 0);
  const std::vector<float> zero_weights(K, 0.0f);
  for (int r = 0; r < R; ++r) {
    if (r == 0 && local_ == nullptr && per_rank[0].empty()) continue;  // the coordinator alone
    const size_t begin = send_.data.size();
    wire::DispatchHeader header;
    header.layer = layer;
    header.rows = static_cast<int32_t>(per_rank[r].size());
    header.step = step_;
    header.micro_batch = static_cast<int16_t>(micro);
    header.micro_batches = static_cast<int16_t>(micros);
    header.link = handle.link ? 1 : 0;
    Append(send_.data, &header, 1);
    for (const auto& [t, s] : per_rank[r]) {
      const Segment& seg = handle.segments[t][s];
      std::vector<int32_t> ids(zero_ids);
      std::vector<float> weights(zero_weights);
      for (int i = 0; i < seg.n; ++i) {
        ids[i] = routes.expert[int64_t{t} * K + seg.j0 + i];
        weights[i] = routes.weight[int64_t{t} * K + seg.j0 + i];
      }
      const int32_t n = seg.n;
      Append(send_.data, &n, 1);
      Append(send_.data, ids.data(), K);
      Append(send_.data, weights.data(), K);
      if (h)
        Append(send_.data, h + int64_t{t} * D, D);
      else
        handle.rank_tokens[r].push_back(t);
    }
    send_.counts[r] = static_cast<int64_t>(send_.data.size() - begin);
    handle.rows_sent[r] = static_cast<int64_t>(per_rank[r].size());
    if (stats_) {
      stats_->rank_rows[r] += static_cast<int64_t>(per_rank[r].size());
      // Over the link the hidden rows travel apart, in bf16.
      stats_->rank_bytes[r] += send_.counts[r] + (h ? 0 : handle.rows_sent[r] * D * 2);
    }
  }
  if (Status s = transport_->Exchange(send_, &handle.received, {"dispatch", layer, step_}, timeout_);
      !s.ok())
    return Fail(s);
  if (stats_) stats_->seconds.dispatch += Since(t0);
  return handle;
}

Status ExpertParallel::ReceiveAnswers(const DispatchHandle& handle, double* slowest) {
  const int R = transport_->size(), D = config_.hidden;
  // Rank 0's own share (one process): answer it here, then exchange the answers.
  send_.data.clear();
  send_.counts.assign(R, 0);
  double local_seconds = 0;
  if (local_ != nullptr && handle.received.counts[0] > 0) {
    const uint8_t* msg = handle.received.at(0);
    wire::DispatchHeader header;
    std::memcpy(&header, msg, sizeof(header));
    MOE_RETURN_IF_ERROR(local_->Process(header, msg + sizeof(header),
                                        handle.received.counts[0] - sizeof(header), &send_.data));
    send_.counts[0] = static_cast<int64_t>(send_.data.size());
    wire::ResultHeader result;
    std::memcpy(&result, send_.data.data(), sizeof(result));
    local_seconds = result.compute_seconds;
  }
  if (Status s = transport_->Exchange(send_, &recv_, {"combine", handle.layer, step_}, timeout_);
      !s.ok())
    return Fail(s);

  // Check every reply.
  *slowest = local_seconds;
  for (int r = 0; r < R; ++r) {
    if (recv_.counts[r] == 0 && handle.expected_vectors[r] == 0) continue;
    wire::ResultHeader header;
    if (recv_.counts[r] < static_cast<int64_t>(sizeof(header)))
      return Fail(Internal("rank " + std::to_string(r) + " sent a short combine message"));
    std::memcpy(&header, recv_.at(r), sizeof(header));
    const int64_t bytes = sizeof(header) + (handle.link ? 0 : int64_t{header.vectors} * D * 4);
    if (stats_) {
      stats_->rows_sent[handle.layer][r] += handle.rows_sent[r];
      stats_->rows_received[handle.layer][r] += header.rows_received;
      stats_->vectors_expected[handle.layer][r] += handle.expected_vectors[r];
      stats_->vectors_returned[handle.layer][r] += header.vectors;
    }
    if (header.magic != wire::kResultMagic || header.layer != handle.layer ||
        header.step != step_ || header.vectors != handle.expected_vectors[r] ||
        header.rows_received != handle.rows_sent[r] || bytes != recv_.counts[r])
      return Fail(Internal("rank " + std::to_string(r) + " answered layer " +
                           std::to_string(header.layer) + " with " +
                           std::to_string(header.vectors) + " vectors for " +
                           std::to_string(header.rows_received) + " rows; expected layer " +
                           std::to_string(handle.layer) + " with " +
                           std::to_string(handle.expected_vectors[r]) + " vectors for " +
                           std::to_string(handle.rows_sent[r]) + " rows"));
    *slowest = std::max(*slowest, header.compute_seconds);
    if (stats_ && r > 0)  // over the link the answers travel apart
      stats_->rank_bytes[r] +=
          recv_.counts[r] + (handle.link ? int64_t{header.vectors} * D * 4 : 0);
  }
  return Status::Ok();
}

void ExpertParallel::CountCombine(std::chrono::steady_clock::time_point t0, double slowest) {
  if (!stats_) return;
  stats_->seconds.expert += slowest;
  stats_->seconds.combine += std::max(0.0, Since(t0) - slowest);
}

void ExpertParallel::PlanCombine(const DispatchHandle& handle, const std::vector<int64_t>& first,
                                 SumPlan* plan) const {
  // Per token, its experts in id order: a run of whole experts comes pre-summed and adds with
  // weight 1; a sliced expert's blocks are added in block order across its owners, then
  // weighted.
  const Routes& routes = *handle.routes;
  const int K = routes.k, D = config_.hidden;
  auto at = [&](const Segment& seg, int b) { return first[seg.rank] + (seg.first + b) * D; };
  plan->Clear();
  for (int t = 0; t < handle.tokens; ++t) {
    plan->AddOutput();
    const auto& segs = handle.segments[t];
    for (size_t i = 0; i < segs.size();) {
      const Segment& seg = segs[i];
      if (placement_->whole(routes.expert[int64_t{t} * K + seg.j0])) {
        plan->AddTerm(1.0f);
        plan->AddSource(at(seg, 0));
        ++i;
        continue;
      }
      plan->AddTerm(routes.weight[int64_t{t} * K + seg.j0]);
      for (; i < segs.size() && segs[i].j0 == seg.j0; ++i)
        for (int b = 0; b < segs[i].vectors; ++b) plan->AddSource(at(segs[i], b));
    }
  }
}

Status ExpertParallel::Combine(const DispatchHandle& handle, float* y) {
  if (handle.link) return Internal("Combine got a dispatch whose answers come over the GPU link");
  const auto t0 = std::chrono::steady_clock::now();
  double slowest = 0;
  MOE_RETURN_IF_ERROR(ReceiveAnswers(handle, &slowest));
  // Each rank's answers follow its header; every message is a whole number of floats long.
  static_assert(sizeof(wire::ResultHeader) % 4 == 0);
  std::vector<int64_t> first(transport_->size());
  for (size_t r = 0; r < first.size(); ++r)
    first[r] = (recv_.offset(static_cast<int>(r)) + int64_t{sizeof(wire::ResultHeader)}) / 4;
  PlanCombine(handle, first, &plan_);
  ApplySumPlan(plan_, reinterpret_cast<const float*>(recv_.data.data()), config_.hidden, y);
  CountCombine(t0, slowest);
  return Status::Ok();
}

Status ExpertParallel::CombineLinked(const DispatchHandle& handle, SumPlan* plan) {
  if (!handle.link) return Internal("CombineLinked got a dispatch with its answers inline");
  const auto t0 = std::chrono::steady_clock::now();
  double slowest = 0;
  MOE_RETURN_IF_ERROR(ReceiveAnswers(handle, &slowest));
  // On the device the answers lie rank after rank.
  std::vector<int64_t> first(transport_->size());
  int64_t at = 0;
  for (size_t r = 0; r < first.size(); ++r) {
    first[r] = at * config_.hidden;
    at += handle.expected_vectors[r];
  }
  PlanCombine(handle, first, plan);
  CountCombine(t0, slowest);
  return Status::Ok();
}

Status ExpertParallel::Stop() {
  if (broken_ || stopped_ || transport_->size() == 1) return Status::Ok();
  stopped_ = true;
  const int R = transport_->size();
  send_.data.clear();
  send_.counts.assign(R, 0);
  for (int r = 1; r < R; ++r) {
    wire::DispatchHeader header;
    header.command = wire::kStop;
    header.step = step_;
    Append(send_.data, &header, 1);
    send_.counts[r] = sizeof(header);
  }
  if (Status s = transport_->Exchange(send_, &recv_, {"stop", -1, step_}, timeout_); !s.ok())
    return Fail(s);
  return Status::Ok();
}

}  // namespace moe
