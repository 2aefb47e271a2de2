// GpuForward's experts (coordinator/gpu_forward.h): each micro-batch's rows to the experts and
// their answers added to x, on this GPU (LocalExperts), host-staged through ExpertParallel's
// messages, or over the GPU link.
#include <numeric>

#include "common/check.h"
#include "common/cuda/gpu_ops.h"
#include "coordinator/gpu_forward.h"

namespace moe {
namespace {

// The answer vectors every rank sends back for the dispatch.
int64_t AnswerVectors(const DispatchHandle& handle) {
  return std::accumulate(handle.expected_vectors.begin(), handle.expected_vectors.end(),
                         int64_t{0});
}

}  // namespace

Status GpuForward::Dispatch(int l, int micro, MicroBatch& mb) {
  auto t = Clock::now();
  if (local()) {
    MOE_RETURN_IF_ERROR(LocalExperts(l, mb));
    Lap(t, stats_ ? &stats_->seconds.expert : nullptr);
    return Status::Ok();
  }
  const float* h_host =
      linked() ? nullptr : mb.h_host.Get<float>(int64_t{mb.rows} * c_.hidden).value();
  MOE_ASSIGN_OR_RETURN(mb.handle,
                       experts_->Dispatch(l, micro, parts_, h_host, mb.rows, mb.routes));
  in_flight_ = true;
  if (linked()) {
    MOE_RETURN_IF_ERROR(SendOverLink(l, mb));
    // The other micro-batch's attention waits for the whole device: the rows must be gone
    // first, or a worker that failed before taking them would hold it with no deadline.
    if (parts_ > 1)
      MOE_RETURN_IF_ERROR(link_->Wait({"dispatch rows", l, mb.handle.step},
                                      gpu::DeviceLink::Deadline::kRankTimeout));
  }
  Lap(t, stats_ ? &stats_->seconds.moe_wait : nullptr);
  return Status::Ok();
}

Status GpuForward::Combine(int l, MicroBatch& mb) {
  if (local()) return Status::Ok();
  auto t = Clock::now();
  const int n = mb.rows, D = c_.hidden;
  float* x = x_.Get<float>(int64_t{T_} * D).value() + int64_t{mb.row0} * D;
  if (linked()) {
    MOE_RETURN_IF_ERROR(ReceiveOverLink(l, mb));
  } else {
    // x += the experts' answers, in token order                        [n, D]
    MOE_ASSIGN_OR_RETURN(float* moe_host, mb.moe_host.Get<float>(int64_t{n} * D));
    MOE_RETURN_IF_ERROR(experts_->Combine(mb.handle, moe_host));
    MOE_ASSIGN_OR_RETURN(float* moe, mb.moe.Get<float>(int64_t{n} * D));
    MOE_RETURN_IF_ERROR(gpu::CopyToDeviceAsync(moe, moe_host, int64_t{n} * D * sizeof(float)));
    MOE_RETURN_IF_ERROR(gpu::AddInPlace(x, moe, int64_t{n} * D));
  }
  in_flight_ = false;
  Lap(t, stats_ ? &stats_->seconds.moe_wait : nullptr);
  return Status::Ok();
}

Status GpuForward::LocalExperts(int l, MicroBatch& mb) {
  const Routes& routes = mb.routes;
  const int T = mb.rows, D = c_.hidden, K = routes.k, E = c_.is_moe() ? c_.num_experts : 1;
  const int64_t n = int64_t{T} * K;
  const float* h = h_.Get<float>(int64_t{T_} * D).value() + int64_t{mb.row0} * D;
  float* x = x_.Get<float>(int64_t{T_} * D).value() + int64_t{mb.row0} * D;
  // Slots grouped by expert in id order, each expert's tokens in order: slot_rows [n] is each
  // slot's token, and the combine is a sum plan, token t's answer adding its experts' slots in
  // id order, weighted.
  std::vector<int> counts(E, 0), cursor(E, 0);
  for (int e : routes.expert) {
    MOE_CHECK(e >= 0 && e < E, "routed expert out of range");
    ++counts[e];
  }
  for (int e = 1; e < E; ++e) cursor[e] = cursor[e - 1] + counts[e - 1];
  MOE_ASSIGN_OR_RETURN(int32_t * slot_rows, mb.slot_rows.Get<int32_t>(n));
  SumPlan& combine = mb.combine;
  combine.Clear();
  for (int t = 0; t < T; ++t) {
    combine.AddOutput();
    for (int j = 0; j < K; ++j) {
      const int64_t i = int64_t{t} * K + j;
      const int slot = cursor[routes.expert[i]]++;
      slot_rows[slot] = t;
      combine.AddTerm(routes.weight[i]);
      combine.AddSource(int64_t{slot} * D);
    }
  }
  MOE_ASSIGN_OR_RETURN(int32_t * rows, mb.token_rows.Get<int32_t>(n));
  MOE_RETURN_IF_ERROR(gpu::CopyToDeviceAsync(rows, slot_rows, n * sizeof(int32_t)));
  MOE_ASSIGN_OR_RETURN(gpu::DeviceSumPlan plan, gpu::UploadSumPlan(combine, mb.sum_plan));
  // xb [n, D] = h of each slot's token in bf16; y [n, D] = its expert's FFN
  MOE_ASSIGN_OR_RETURN(uint16_t * xb, mb.xb.Get<uint16_t>(n * D));
  MOE_ASSIGN_OR_RETURN(float* y, expert_y_.Get<float>(n * D));
  MOE_RETURN_IF_ERROR(gpu::GatherRowsBf16(h, rows, static_cast<int>(n), D, xb));
  MOE_RETURN_IF_ERROR(local_->RunGrouped(l, xb, counts, y));
  // x[t] += its experts' weighted answers, in id order                  [T, D]
  MOE_RETURN_IF_ERROR(gpu::ApplySumPlan(plan, y, D, true, x));
  if (stats_) {
    stats_->CountRoutes(l, routes.expert);
    // What the exchange would have counted: one row and one summed vector per token.
    stats_->rank_rows[0] += T;
    stats_->rows_sent[l][0] += T;
    stats_->rows_received[l][0] += T;
    stats_->vectors_expected[l][0] += T;
    stats_->vectors_returned[l][0] += T;
  }
  return Status::Ok();
}

Status GpuForward::SendOverLink(int l, MicroBatch& mb) {
  const DispatchHandle& handle = mb.handle;
  const int D = c_.hidden;
  const float* h = h_.Get<float>(int64_t{T_} * D).value() + int64_t{mb.row0} * D;
  // send [rows, D] bf16: each rank's rows end to end, gathered from h by token.
  std::vector<int32_t> tokens;
  for (const auto& rank_tokens : handle.rank_tokens)
    tokens.insert(tokens.end(), rank_tokens.begin(), rank_tokens.end());
  const int64_t rows = static_cast<int64_t>(tokens.size());
  // Every buffer of the exchange before anything is queued: growing frees, and a free waits
  // for the whole device, the link's moves included.
  MOE_ASSIGN_OR_RETURN(int32_t * token_rows, mb.token_rows.Get<int32_t>(rows));
  MOE_ASSIGN_OR_RETURN(uint16_t * send, mb.xb.Get<uint16_t>(rows * D));
  MOE_RETURN_IF_ERROR(mb.answers.Get<float>(AnswerVectors(handle) * D).status());
  MOE_RETURN_IF_ERROR(gpu::CopyToDeviceAsync(token_rows, tokens.data(), rows * sizeof(int32_t)));
  MOE_RETURN_IF_ERROR(gpu::GatherRowsBf16(h, token_rows, static_cast<int>(rows), D, send));
  std::vector<gpu::DeviceLink::Move> out;
  int64_t row = 0;
  for (int r = 0; r < static_cast<int>(handle.rank_tokens.size()); ++r) {
    const int64_t n = static_cast<int64_t>(handle.rank_tokens[r].size());
    if (n > 0) out.push_back({send + row * D, n * D * 2, r});
    row += n;
  }
  return link_->Send(out, {"dispatch rows", l, handle.step},
                     gpu::DeviceLink::Deadline::kRankTimeout);
}

Status GpuForward::ReceiveOverLink(int l, MicroBatch& mb) {
  const DispatchHandle& handle = mb.handle;
  const int D = c_.hidden;
  float* answers = mb.answers.Get<float>(AnswerVectors(handle) * D).value();  // SendOverLink's
  // The answers in, rank after rank, queued before their headers arrive.
  std::vector<gpu::DeviceLink::Move> in;
  int64_t vector = 0;
  for (int r = 0; r < static_cast<int>(handle.expected_vectors.size()); ++r) {
    const int64_t v = handle.expected_vectors[r];
    if (v > 0) in.push_back({answers + vector * D, v * D * 4, r});
    vector += v;
  }
  MOE_RETURN_IF_ERROR(link_->Receive(in, {"combine answers", l, handle.step}));
  // x += the answers summed per token as the plan says                 [n, D]
  MOE_RETURN_IF_ERROR(experts_->CombineLinked(handle, &mb.combine));
  MOE_RETURN_IF_ERROR(
      link_->Wait({"combine", l, handle.step}, gpu::DeviceLink::Deadline::kRankTimeout));
  MOE_ASSIGN_OR_RETURN(gpu::DeviceSumPlan plan, gpu::UploadSumPlan(mb.combine, mb.sum_plan));
  float* x = x_.Get<float>(int64_t{T_} * D).value() + int64_t{mb.row0} * D;
  return gpu::ApplySumPlan(plan, answers, D, true, x);
}

}  // namespace moe
