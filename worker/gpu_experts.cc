#include "worker/gpu_experts.h"

#include "common/cuda/gpu_ops.h"

namespace moe {

StatusOr<std::unique_ptr<GpuExperts>> GpuExperts::Load(const ModelConfig& config,
                                                       Checkpoint& ckpt,
                                                       const ExpertStore& layout) {
  auto g = std::unique_ptr<GpuExperts>(new GpuExperts());
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

Status GpuExperts::Run(int layer, const std::vector<DeviceTask>& tasks) {
  for (const DeviceTask& t : tasks) {
    const Slice& s = layers_[layer][t.slice];
    const int64_t n = t.n, Fs = s.ffn, out_rows = s.whole ? n : n * s.blocks;
    MOE_ASSIGN_OR_RETURN(float* x, x_.Get<float>(n * D_));
    MOE_ASSIGN_OR_RETURN(uint16_t* xb, xb_.Get<uint16_t>(n * D_));
    MOE_ASSIGN_OR_RETURN(float* gate_up, gate_up_.Get<float>(n * 2 * Fs));
    MOE_ASSIGN_OR_RETURN(uint16_t* act, act_.Get<uint16_t>(n * Fs));
    MOE_ASSIGN_OR_RETURN(float* out, out_.Get<float>(out_rows * D_));
    MOE_RETURN_IF_ERROR(gpu::CopyToDevice(x, t.x, n * D_ * sizeof(float)));
    // gate_up [n, 2Fs] = x [w1; w3]^T; act [n, Fs] = silu(gate) * up in bf16
    MOE_RETURN_IF_ERROR(gpu::ToBf16(x, n * D_, xb));
    MOE_RETURN_IF_ERROR(gpu::GemmBf16(xb, t.n, D_, s.w13, 2 * s.ffn, D_, D_, false, gate_up));
    MOE_RETURN_IF_ERROR(gpu::SiluMulToBf16(gate_up, n, s.ffn, act));
    // out = act w2^T: [n, D] whole, or [blocks, n, D] one partial per ffn block
    if (s.whole)
      MOE_RETURN_IF_ERROR(gpu::GemmBf16(act, t.n, s.ffn, s.w2, D_, s.ffn, s.ffn, false, out));
    else
      MOE_RETURN_IF_ERROR(
          gpu::GemmBf16Blocks(act, t.n, s.ffn, s.w2, D_, Fb_, s.ffn, s.blocks, out));
    MOE_RETURN_IF_ERROR(gpu::CopyToHost(t.out, out, out_rows * D_ * sizeof(float)));
  }
  return Status::Ok();
}

Status GpuExperts::RunGrouped(int layer, const uint16_t* xb, const std::vector<int>& counts,
                              float* y) {
  if (!every_expert_) return Internal("RunGrouped needs every expert held whole");
  int64_t n = 0;
  for (int c : counts) n += c;
  if (n == 0) return Status::Ok();
  const int F = layers_[layer].front().ffn;
  MOE_ASSIGN_OR_RETURN(float* gate_up, gate_up_.Get<float>(n * 2 * F));
  MOE_ASSIGN_OR_RETURN(uint16_t* act, act_.Get<uint16_t>(n * F));
  // gate_up [n, 2F] = x [w1; w3]^T per expert's rows; act [n, F] = silu(gate) * up in bf16
  int64_t row = 0;
  for (size_t e = 0; e < counts.size(); row += counts[e], ++e) {
    if (counts[e] == 0) continue;
    const Slice& s = layers_[layer][whole_[layer][e]];
    MOE_RETURN_IF_ERROR(gpu::GemmBf16(xb + row * D_, counts[e], D_, s.w13, 2 * F, D_, D_, false,
                                      gate_up + row * 2 * F));
  }
  MOE_RETURN_IF_ERROR(gpu::SiluMulToBf16(gate_up, n, F, act));
  // y [n, D] = act w2^T per expert's rows
  row = 0;
  for (size_t e = 0; e < counts.size(); row += counts[e], ++e) {
    if (counts[e] == 0) continue;
    const Slice& s = layers_[layer][whole_[layer][e]];
    MOE_RETURN_IF_ERROR(
        gpu::GemmBf16(act + row * F, counts[e], F, s.w2, D_, F, F, false, y + row * D_));
  }
  return Status::Ok();
}

}  // namespace moe
