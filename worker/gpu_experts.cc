#include "worker/gpu_experts.h"

#include <algorithm>

#include "common/cuda/gpu_ops.h"

namespace moe {

StatusOr<std::unique_ptr<GpuExperts>> GpuExperts::Load(const ModelConfig& config,
                                                       Checkpoint& ckpt,
                                                       const ExpertStore& layout, int lanes) {
  if (lanes < 1 || lanes > kMaxLanes)
    return InvalidArgument("expert streams must be 1 to " + std::to_string(kMaxLanes) +
                           ", got " + std::to_string(lanes));
  auto g = std::unique_ptr<GpuExperts>(new GpuExperts());
  if (lanes > 1) {
    MOE_ASSIGN_OR_RETURN(g->side_, gpu::SideLanes::Create(lanes));
  }
  const int64_t D = config.hidden, F = config.ffn;
  g->D_ = config.hidden;
  g->Fb_ = layout.block_size();
  g->layers_.resize(config.layers);
  const int E = config.is_moe() ? config.num_experts : 1;
  g->whole_.assign(config.layers, std::vector<int>(E, -1));
  for (int l = 0; l < config.layers; ++l) {
    for (const ExpertSlice& s : layout.layer(l)) {
      const ExpertTensorNames n = ExpertNames(config, l, s.expert);
      const int64_t f0 = int64_t{s.block_begin} * g->Fb_, f1 = int64_t{s.block_end} * g->Fb_;
      Slice d;
      // w1 and w3 stacked: one GEMM gives gate and up side by side.
      MOE_ASSIGN_OR_RETURN(uint16_t * w13, g->arena_.Array<uint16_t>(2 * (f1 - f0) * D));
      MOE_RETURN_IF_ERROR(gpu::UploadBf16Into(ckpt, n.w1, {F, D}, w13, f0, f1));
      MOE_RETURN_IF_ERROR(gpu::UploadBf16Into(ckpt, n.w3, {F, D}, w13 + (f1 - f0) * D, f0, f1));
      d.w13 = w13;
      MOE_ASSIGN_OR_RETURN(d.w2, gpu::UploadBf16(ckpt, n.w2, {D, F}, g->arena_, 0, D, f0, f1));
      d.ffn = static_cast<int>(f1 - f0);
      d.blocks = s.block_end - s.block_begin;
      d.whole = d.blocks == layout.blocks();
      if (d.whole) g->whole_[l][s.expert] = static_cast<int>(g->layers_[l].size());
      g->layers_[l].push_back(d);
    }
  }
  g->every_expert_ = true;
  for (const auto& layer : g->whole_)
    for (int slice : layer) g->every_expert_ = g->every_expert_ && slice >= 0;
  return g;
}

Status GpuExperts::Run(const DeviceJob& job) {
  if (job.x == nullptr && link_ == nullptr)
    return Internal("a linked expert job reached a GPU with no link");
  Status s = RunJob(job);
  // Moves left queued would hold the device: a failed linked job ends the link (and the job).
  if (!s.ok() && job.x == nullptr) link_->Abort();
  return s;
}

Status GpuExperts::RunJob(const DeviceJob& job) {
  const int D = D_;
  const bool linked = job.x == nullptr;
  const std::vector<Slice>& slices = layers_[job.layer];
  int64_t n_all = 0, out_all = 0;
  for (const DeviceTask& t : job.tasks) {
    n_all += t.n;
    out_all += int64_t{t.n} * (slices[t.slice].whole ? 1 : slices[t.slice].blocks);
  }
  const ExchangeLabel rows_label{"dispatch rows", job.layer, job.step},
      answers_label{"combine answers", job.layer, job.step};
  const auto deadline = job.ping_pong ? gpu::DeviceLink::Deadline::kNone
                                      : gpu::DeviceLink::Deadline::kRankTimeout;
  // No rows here this layer: nothing travels either way (the link's calls still pair up).
  if (n_all == 0) {
    if (!linked) return Status::Ok();
    MOE_RETURN_IF_ERROR(link_->Receive({}, rows_label));
    MOE_RETURN_IF_ERROR(link_->Send({}, answers_label, deadline));
    return link_->Wait(answers_label, deadline);
  }
  // Every buffer is grown before anything is queued: growing frees, and a free waits for the
  // whole device. xb [sum n, D] bf16: the tasks' rows end to end; out: each task's outputs end
  // to end, [n, D] whole or [blocks, n, D] one partial per block.
  MOE_ASSIGN_OR_RETURN(uint16_t * xb, xb_.Get<uint16_t>(n_all * D));
  MOE_ASSIGN_OR_RETURN(float* out, out_.Get<float>(out_all * D));
  MOE_ASSIGN_OR_RETURN(float* answers, answers_.Get<float>(int64_t{job.vectors} * D));
  MOE_RETURN_IF_ERROR(ReserveFfn(slices, job.tasks));
  MOE_ASSIGN_OR_RETURN(gpu::DeviceSumPlan plan, gpu::UploadSumPlan(*job.plan, plan_));
  if (linked) {
    // rows [rows, D] bf16 from rank 0, then each task's rows picked out.
    MOE_ASSIGN_OR_RETURN(uint16_t * rows, rows_.Get<uint16_t>(int64_t{job.rows} * D));
    MOE_ASSIGN_OR_RETURN(int32_t * index, index_.Get<int32_t>(n_all));
    MOE_RETURN_IF_ERROR(gpu::CopyToDeviceAsync(index, job.row_index, n_all * sizeof(int32_t)));
    MOE_RETURN_IF_ERROR(link_->Receive({{rows, int64_t{job.rows} * D * 2, 0}}, rows_label));
    // Rank 0 sends the rows at once, so they keep the deadline the answers lack in ping-pong.
    if (job.ping_pong)
      MOE_RETURN_IF_ERROR(link_->Wait(rows_label, gpu::DeviceLink::Deadline::kRankTimeout));
    MOE_RETURN_IF_ERROR(gpu::GatherRowsBf16(rows, index, static_cast<int>(n_all), D, xb));
  } else {
    MOE_ASSIGN_OR_RETURN(float* x, x_.Get<float>(n_all * D));
    MOE_RETURN_IF_ERROR(gpu::CopyToDeviceAsync(x, job.x, n_all * D * sizeof(float)));
    MOE_RETURN_IF_ERROR(gpu::ToBf16(x, n_all * D, xb));
  }
  // answers [vectors, D] = the job's plan over the outputs, back to rank 0 or the host.
  MOE_RETURN_IF_ERROR(Experts(slices, job.tasks, xb, out));
  MOE_RETURN_IF_ERROR(gpu::ApplySumPlan(plan, out, D, false, answers));
  if (!linked) return gpu::CopyToHost(job.out, answers, int64_t{job.vectors} * D * sizeof(float));
  MOE_RETURN_IF_ERROR(
      link_->Send({{answers, int64_t{job.vectors} * D * 4, 0}}, answers_label, deadline));
  return link_->Wait(answers_label, deadline);
}

int GpuExperts::LanesFor(const std::vector<DeviceTask>& tasks) const {
  const int with_rows = static_cast<int>(
      std::count_if(tasks.begin(), tasks.end(), [](const DeviceTask& t) { return t.n > 0; }));
  return std::max(1, std::min(side_ ? side_->size() : 1, with_rows));
}

Status GpuExperts::ReserveFfn(const std::vector<Slice>& slices,
                              const std::vector<DeviceTask>& tasks) {
  const int lanes = LanesFor(tasks);
  int64_t largest[kMaxLanes] = {};  // per lane: rows x ffn width of its largest task
  int k = 0;
  for (const DeviceTask& t : tasks) {
    if (t.n == 0) continue;
    int64_t& l = largest[k++ % lanes];
    l = std::max(l, int64_t{t.n} * slices[t.slice].ffn);
  }
  for (int i = 0; i < lanes; ++i) {
    MOE_RETURN_IF_ERROR(gate_up_[i].Get<float>(2 * largest[i]).status());
    MOE_RETURN_IF_ERROR(act_[i].Get<uint16_t>(largest[i]).status());
  }
  return Status::Ok();
}

Status GpuExperts::Experts(const std::vector<Slice>& slices, const std::vector<DeviceTask>& tasks,
                           const uint16_t* xb, float* out) {
  const int D = D_, lanes = LanesFor(tasks);
  if (lanes > 1) MOE_RETURN_IF_ERROR(side_->Fork(lanes));
  Status status = Status::Ok();
  int64_t row = 0, at = 0;
  int k = 0;
  for (const DeviceTask& t : tasks) {
    const Slice& s = slices[t.slice];
    if (t.n == 0) continue;
    const int lane = k++ % lanes;
    // One lane: the device's stream (the side lanes wait for it only when forked).
    status = Ffn(s, t.n, xb + row * D, lane, lanes > 1 ? side_->lane(lane) : gpu::Lane{},
                 out + at);
    if (!status.ok()) break;
    row += t.n;
    at += int64_t{t.n} * (s.whole ? 1 : s.blocks) * D;
  }
  // Joined after a failure too: the device's stream must not run ahead of the lanes' work.
  if (lanes > 1) {
    const Status joined = side_->Join(lanes);
    if (status.ok()) status = joined;
  }
  return status;
}

Status GpuExperts::Ffn(const Slice& s, int n, const uint16_t* xb, int lane, const gpu::Lane& on,
                       float* out) {
  const int D = D_;
  float* gate_up = gate_up_[lane].Get<float>(int64_t{n} * 2 * s.ffn).value();  // ReserveFfn
  uint16_t* act = act_[lane].Get<uint16_t>(int64_t{n} * s.ffn).value();
  // gate_up [n, 2Fs] = x [w1; w3]^T; act [n, Fs] = silu(gate) * up in bf16
  MOE_RETURN_IF_ERROR(gpu::GemmBf16(xb, n, D, s.w13, 2 * s.ffn, D, D, false, gate_up, on));
  MOE_RETURN_IF_ERROR(gpu::SiluMulToBf16(gate_up, n, s.ffn, act, on));
  if (s.whole) return gpu::GemmBf16(act, n, s.ffn, s.w2, D, s.ffn, s.ffn, false, out, on);
  return gpu::GemmBf16Blocks(act, n, s.ffn, s.w2, D, Fb_, s.ffn, s.blocks, out, on);
}

Status GpuExperts::RunGrouped(int layer, const uint16_t* xb, const std::vector<int>& counts,
                              float* y) {
  if (!every_expert_) return Internal("RunGrouped needs every expert held whole");
  // Each expert's rows as a task of its whole slice, in id order.
  std::vector<DeviceTask> tasks;
  for (size_t e = 0; e < counts.size(); ++e) tasks.push_back({whole_[layer][e], counts[e]});
  MOE_RETURN_IF_ERROR(ReserveFfn(layers_[layer], tasks));
  return Experts(layers_[layer], tasks, xb, y);
}

}  // namespace moe
