#include "coordinator/gpu_forward.h"

#include <algorithm>
#include <chrono>
#include <map>

#include "common/cuda/gpu_ops.h"
#include "common/tensor_names.h"
#include "coordinator/rope.h"

namespace moe {
namespace {

// A pool's keys and values on the device, freed with the pool.
struct DeviceKvStorage {
  float* k = nullptr;
  float* v = nullptr;
  ~DeviceKvStorage() {
    if (k) gpu::Free(k);
    if (v) gpu::Free(v);
  }
};

}  // namespace

StatusOr<std::unique_ptr<GpuForward>> GpuForward::Load(const ModelConfig& c, Checkpoint& ckpt) {
  if (c.head_dim > gpu::kMaxHeadDim || c.head_dim % 2 != 0)
    return InvalidArgument("the GPU path takes an even head_dim of at most " +
                           std::to_string(gpu::kMaxHeadDim) + "; this model has " +
                           std::to_string(c.head_dim) + " (use --device cpu)");
  if (c.is_moe() && (c.num_experts > 64 || c.experts_per_token > c.num_experts))
    return InvalidArgument("the GPU router takes at most 64 experts (use --device cpu)");
  auto g = std::unique_ptr<GpuForward>(new GpuForward(c));
  const int64_t D = c.hidden, q_width = int64_t{c.heads} * c.head_dim,
                kv_width = int64_t{c.kv_heads} * c.head_dim;
  gpu::DeviceArena& a = g->weights_;
  MOE_ASSIGN_OR_RETURN(g->embed_, gpu::UploadBf16(ckpt, names::Embed(), {c.vocab, D}, a));
  MOE_ASSIGN_OR_RETURN(g->final_norm_, gpu::UploadBf16(ckpt, names::FinalNorm(), {D}, a));
  if (c.tie_embeddings) {
    g->lm_head_ = g->embed_;
    if (ckpt.tensors().count(names::LmHead())) MOE_RETURN_IF_ERROR(ckpt.Skip(names::LmHead()));
  } else {
    MOE_ASSIGN_OR_RETURN(g->lm_head_, gpu::UploadBf16(ckpt, names::LmHead(), {c.vocab, D}, a));
  }
  for (int l = 0; l < c.layers; ++l) {
    LayerWeights w;
    MOE_ASSIGN_OR_RETURN(w.attn_norm, gpu::UploadBf16(ckpt, names::AttnNorm(l), {D}, a));
    MOE_ASSIGN_OR_RETURN(w.wq, gpu::UploadBf16(ckpt, names::Wq(l), {q_width, D}, a));
    MOE_ASSIGN_OR_RETURN(w.wk, gpu::UploadBf16(ckpt, names::Wk(l), {kv_width, D}, a));
    MOE_ASSIGN_OR_RETURN(w.wv, gpu::UploadBf16(ckpt, names::Wv(l), {kv_width, D}, a));
    MOE_ASSIGN_OR_RETURN(w.wo, gpu::UploadBf16(ckpt, names::Wo(l), {D, q_width}, a));
    MOE_ASSIGN_OR_RETURN(w.ffn_norm, gpu::UploadBf16(ckpt, names::FfnNorm(l), {D}, a));
    if (c.is_moe()) {
      MOE_ASSIGN_OR_RETURN(w.router,
                           gpu::UploadBf16(ckpt, names::Router(l), {c.num_experts, D}, a));
    }
    g->layers_.push_back(w);
  }
  // RoPE's inverse frequencies exactly as the CPU forms them.
  const Rope rope(c.head_dim, c.rope_theta);
  MOE_ASSIGN_OR_RETURN(float* inv_freq, a.Array<float>(c.head_dim / 2));
  MOE_RETURN_IF_ERROR(gpu::CopyToDevice(inv_freq, rope.inv_freq().data(),
                                        rope.inv_freq().size() * sizeof(float)));
  g->inv_freq_ = inv_freq;
  MOE_ASSIGN_OR_RETURN(g->split_arrivals_, a.Array<int>(gpu::kSplitBlocks));
  MOE_RETURN_IF_ERROR(gpu::Memset(g->split_arrivals_, 0, gpu::kSplitBlocks * sizeof(int)));
  return g;
}

StatusOr<gpu::PagedKv> GpuForward::Storage(KvBlockPool& pool) {
  std::shared_ptr<void>& slot = pool.device_storage();
  if (!slot) {
    auto s = std::make_shared<DeviceKvStorage>();
    const size_t bytes = static_cast<size_t>(pool.total_blocks()) * pool.layers() *
                         pool.block_size() * pool.kv_width() * sizeof(float);
    auto k = gpu::Alloc(bytes);
    auto v = k.ok() ? gpu::Alloc(bytes) : k;
    if (k.ok()) s->k = static_cast<float*>(k.value());
    if (!k.ok() || !v.ok())
      return ResourceExhausted("cannot allocate " + std::to_string(2 * (bytes >> 20)) +
                               " MiB of KV cache on the GPU; ask for fewer positions "
                               "(--kv-cache-mib when serving; a shorter prompt, --max-tokens "
                               "or --batch)");
    s->v = static_cast<float*>(v.value());
    slot = s;
  }
  const auto* s = static_cast<const DeviceKvStorage*>(slot.get());
  return gpu::PagedKv{s->k, s->v, pool.layers(), pool.block_size(), c_.kv_heads, c_.head_dim};
}

Status GpuForward::Describe(const std::vector<int>& tokens,
                            const std::vector<SequenceChunk>& chunks,
                            const std::vector<int>& logit_rows) {
  const int T = T_;
  if (experts_ == nullptr) return Internal("the GPU forward pass has no expert backend");
  // Every chunk's keys get room first, then its sequence's block table is taken (a chunk cut
  // between the micro-batches keeps one).
  std::vector<int32_t> pos(T), table_at(T), tables;
  std::map<const KvCache*, int> table_of;
  int covered = 0;
  for (const SequenceChunk& chunk : chunks) {
    covered += chunk.length;
    PagedKvCache* cache = chunk.cache->AsPaged();
    if (cache == nullptr)
      return Internal("the GPU forward pass needs paged KV caches (Model::NewCache)");
    if (!cache->Reserve(chunk.start_pos + chunk.length))
      return ResourceExhausted("the KV cache has no free block left for position " +
                               std::to_string(chunk.start_pos + chunk.length - 1));
    table_of[chunk.cache] = static_cast<int>(tables.size());
    tables.insert(tables.end(), cache->table().begin(), cache->table().end());
  }
  if (covered != T) return Internal("the chunks do not cover the step's tokens");
  // With every expert on this GPU there is nothing to overlap: one micro-batch.
  const std::vector<MicroBatchRows> parts =
      SplitMicroBatches(chunks, T, local() ? 1 : micro_batches_);
  parts_ = static_cast<int>(parts.size());
  // Per micro-batch and pool: its decode tiles (one row) and prefill tiles (up to kTileRows
  // rows), as (first row of the step, rows).
  struct Tiles {
    KvBlockPool* pool;
    std::vector<int32_t> decode_row0, prefill_row0, prefill_rows;
    int max_decode_keys = 0;
  };
  std::vector<std::vector<Tiles>> tiles(parts_);
  for (int i = 0; i < parts_; ++i) {
    std::map<KvBlockPool*, int> index;
    int row = parts[i].row0;
    for (const SequenceChunk& chunk : parts[i].chunks) {
      KvBlockPool* pool = chunk.cache->AsPaged()->pool();
      auto [it, added] = index.emplace(pool, static_cast<int>(tiles[i].size()));
      if (added) tiles[i].push_back({pool, {}, {}, {}, 0});
      Tiles& t = tiles[i][it->second];
      const int at = table_of.at(chunk.cache);
      for (int k = 0; k < chunk.length; ++k) {
        pos[row + k] = chunk.start_pos + k;
        table_at[row + k] = at;
      }
      if (chunk.length == 1) {
        t.decode_row0.push_back(row);
        const int keys = chunk.start_pos + 1, window = c_.sliding_window;
        t.max_decode_keys =
            std::max(t.max_decode_keys, window > 0 ? std::min(keys, window) : keys);
      } else {
        for (int k = 0; k < chunk.length; k += gpu::kTileRows) {
          t.prefill_row0.push_back(row + k);
          t.prefill_rows.push_back(std::min(gpu::kTileRows, chunk.length - k));
        }
      }
      row += chunk.length;
    }
  }

  // One upload: pos [T], table_at [T], ids [T], logit rows [R], per micro-batch and pool its
  // tiles' first rows [n] and row counts [n] (decode tiles first), then the block tables.
  std::vector<int32_t>& m = meta_host_;
  m.assign(pos.begin(), pos.end());
  m.insert(m.end(), table_at.begin(), table_at.end());
  m.insert(m.end(), tokens.begin(), tokens.end());
  m.insert(m.end(), logit_rows.begin(), logit_rows.end());
  std::vector<std::vector<size_t>> tile_at(parts_);
  for (int i = 0; i < parts_; ++i)
    for (const Tiles& t : tiles[i]) {
      tile_at[i].push_back(m.size());
      m.insert(m.end(), t.decode_row0.begin(), t.decode_row0.end());
      m.insert(m.end(), t.prefill_row0.begin(), t.prefill_row0.end());
      m.insert(m.end(), t.decode_row0.size(), 1);
      m.insert(m.end(), t.prefill_rows.begin(), t.prefill_rows.end());
    }
  const size_t tables_at = m.size();
  m.insert(m.end(), tables.begin(), tables.end());
  MOE_ASSIGN_OR_RETURN(int32_t * d, meta_.Get<int32_t>(static_cast<int64_t>(m.size())));
  MOE_RETURN_IF_ERROR(gpu::CopyToDevice(d, m.data(), m.size() * sizeof(int32_t)));
  rows_ = {d, d + T, d + tables_at};
  ids_ = d + 2 * T;
  logit_rows_ = d + 3 * T;
  for (int i = 0; i < parts_; ++i) {
    MicroBatch& mb = micro_[i];
    mb.row0 = parts[i].row0;
    mb.rows = parts[i].rows;
    mb.pools.clear();
    for (size_t j = 0; j < tiles[i].size(); ++j) {
      const Tiles& t = tiles[i][j];
      PoolRows p;
      MOE_ASSIGN_OR_RETURN(p.kv, Storage(*t.pool));
      p.decode_tiles = static_cast<int>(t.decode_row0.size());
      p.max_decode_keys = t.max_decode_keys;
      p.prefill_tiles = static_cast<int>(t.prefill_row0.size());
      p.tile_row0 = d + tile_at[i][j];
      p.tile_rows = d + tile_at[i][j] + p.decode_tiles + p.prefill_tiles;
      mb.pools.push_back(p);
    }
  }
  return Status::Ok();
}

Status GpuForward::AttendAndRoute(int l, MicroBatch& mb) {
  PhaseSeconds* times = stats_ ? &stats_->seconds : nullptr;
  auto t = Clock::now();
  MOE_RETURN_IF_ERROR(Attention(l, mb));  // x += attention; h = rmsnorm(x)
  Lap(t, times ? &times->attention : nullptr);
  MOE_RETURN_IF_ERROR(Route(l, mb));
  Lap(t, times ? &times->routing : nullptr);
  return Status::Ok();
}

Status GpuForward::Attention(int l, const MicroBatch& mb) {
  const ModelConfig& c = c_;
  const LayerWeights& w = layers_[l];
  const int T = T_, D = c.hidden, H = c.heads, KV = c.kv_heads, hd = c.head_dim;
  // The step's buffers [T, ...]; this micro-batch's n rows start at row r0. The attention
  // tiles name rows of the step.
  MOE_ASSIGN_OR_RETURN(float* x_step, x_.Get<float>(int64_t{T} * D));
  MOE_ASSIGN_OR_RETURN(float* h_step, h_.Get<float>(int64_t{T} * D));
  MOE_ASSIGN_OR_RETURN(uint16_t* hb, hb_.Get<uint16_t>(int64_t{T} * std::max(D, H * hd)));
  MOE_ASSIGN_OR_RETURN(float* q_step, q_.Get<float>(int64_t{T} * H * hd));
  MOE_ASSIGN_OR_RETURN(float* k_step, k_.Get<float>(int64_t{T} * KV * hd));
  MOE_ASSIGN_OR_RETURN(float* v_step, v_.Get<float>(int64_t{T} * KV * hd));
  MOE_ASSIGN_OR_RETURN(float* attn_step, attn_.Get<float>(int64_t{T} * H * hd));
  const int n = mb.rows;
  const int64_t r0 = mb.row0;
  float *x = x_step + r0 * D, *h = h_step + r0 * D, *q = q_step + r0 * H * hd,
        *k = k_step + r0 * KV * hd, *v = v_step + r0 * KV * hd, *attn = attn_step + r0 * H * hd;
  // h = rmsnorm(x); q, k, v = h Wq, h Wk, h Wv                        [n, H*hd], [n, KV*hd]
  MOE_RETURN_IF_ERROR(gpu::RmsNorm(x, w.attn_norm, c.rms_norm_eps, n, D, h));
  MOE_RETURN_IF_ERROR(gpu::ToBf16(h, int64_t{n} * D, hb));
  MOE_RETURN_IF_ERROR(gpu::GemmBf16(hb, n, D, w.wq, H * hd, D, D, false, q));
  MOE_RETURN_IF_ERROR(gpu::GemmBf16(hb, n, D, w.wk, KV * hd, D, D, false, k));
  MOE_RETURN_IF_ERROR(gpu::GemmBf16(hb, n, D, w.wv, KV * hd, D, D, false, v));
  MOE_RETURN_IF_ERROR(gpu::Rope(q, rows_.pos + r0, inv_freq_, n, H, hd));
  MOE_RETURN_IF_ERROR(gpu::Rope(k, rows_.pos + r0, inv_freq_, n, KV, hd));
  // The micro-batch's keys into the cache, then each of its rows' attention over the cache.
  for (const PoolRows& p : mb.pools) {
    const int tiles = p.decode_tiles + p.prefill_tiles;
    MOE_RETURN_IF_ERROR(
        gpu::KvWrite(p.kv, l, rows_, k_step, v_step, p.tile_row0, p.tile_rows, tiles));
    // Decode rows with long contexts split their keys over more thread blocks.
    gpu::DecodeSplit split = gpu::SplitDecode(p.max_decode_keys, p.decode_tiles * H);
    if (split.splits > 1) {
      MOE_ASSIGN_OR_RETURN(split.workspace, split_.Get<float>(gpu::DecodeWorkspaceFloats(
                                                split, p.decode_tiles, H, hd)));
      split.arrivals = split_arrivals_;
    }
    MOE_RETURN_IF_ERROR(gpu::PagedAttention(p.kv, l, rows_, q_step, H, c.sliding_window,
                                            p.tile_row0, p.tile_rows, p.decode_tiles, false,
                                            split, attn_step));
    MOE_RETURN_IF_ERROR(gpu::PagedAttention(
        p.kv, l, rows_, q_step, H, c.sliding_window, p.tile_row0 + p.decode_tiles,
        p.tile_rows + p.decode_tiles, p.prefill_tiles, true, gpu::DecodeSplit{}, attn_step));
  }
  // x = x + attn Wo                                                    [n, D]
  MOE_RETURN_IF_ERROR(gpu::ToBf16(attn, int64_t{n} * H * hd, hb));
  MOE_RETURN_IF_ERROR(gpu::GemmBf16(hb, n, H * hd, w.wo, D, H * hd, H * hd, true, x));
  // h = rmsnorm(x)
  return gpu::RmsNorm(x, w.ffn_norm, c.rms_norm_eps, n, D, h);
}

Status GpuForward::Route(int l, MicroBatch& mb) {
  const ModelConfig& c = c_;
  const int T = mb.rows, D = c.hidden;
  // routes = router(h) on the device, then to the host (and h with them, host-staged)
  const float* h = h_.Get<float>(int64_t{T_} * D).value() + int64_t{mb.row0} * D;  // Attention's
  const int K = c.is_moe() ? c.experts_per_token : 1;
  // Scratch sized for the whole step, so that it does not grow (a free waits for the whole
  // device) while the other micro-batch is in the exchange.
  MOE_ASSIGN_OR_RETURN(int32_t * ids_host, route_host_.Get<int32_t>(int64_t{T_} * K * 2));
  float* weights_host = reinterpret_cast<float*>(ids_host + int64_t{T} * K);
  if (c.is_moe()) {
    const int E = c.num_experts;
    MOE_ASSIGN_OR_RETURN(float* logits, router_logits_.Get<float>(int64_t{T_} * E));
    MOE_ASSIGN_OR_RETURN(int32_t * ids, route_ids_.Get<int32_t>(int64_t{T_} * K));
    MOE_ASSIGN_OR_RETURN(float* weights, route_weights_.Get<float>(int64_t{T_} * K));
    MOE_RETURN_IF_ERROR(gpu::RouterLogits(h, layers_[l].router, T, E, D, logits));
    MOE_RETURN_IF_ERROR(gpu::RouteTopK(logits, T, E, K, ids, weights));
    MOE_RETURN_IF_ERROR(gpu::CopyToHostAsync(ids_host, ids, int64_t{T} * K * 4));
    MOE_RETURN_IF_ERROR(gpu::CopyToHostAsync(weights_host, weights, int64_t{T} * K * 4));
  }
  if (!local() && !linked()) {
    MOE_ASSIGN_OR_RETURN(float* h_host, mb.h_host.Get<float>(int64_t{T} * D));
    MOE_RETURN_IF_ERROR(gpu::CopyToHostAsync(h_host, h, int64_t{T} * D * sizeof(float)));
  }
  MOE_RETURN_IF_ERROR(gpu::Synchronize());
  Routes& routes = mb.routes;
  if (c.is_moe()) {
    static_assert(sizeof(int) == sizeof(int32_t));
    routes.k = K;
    routes.expert.assign(ids_host, ids_host + int64_t{T} * K);
    routes.weight.assign(weights_host, weights_host + int64_t{T} * K);
    if (skew_) skew_->Apply(&routes);
  } else {
    RouteDense(T, &routes);
  }
  return Status::Ok();
}

Status GpuForward::Forward(const std::vector<int>& tokens, const std::vector<SequenceChunk>& chunks,
                           const std::vector<int>& logit_rows, float* logits) {
  const ModelConfig& c = c_;
  const auto t_start = Clock::now();
  T_ = static_cast<int>(tokens.size());
  R_ = static_cast<int>(logit_rows.size());
  const int T = T_, R = R_, D = c.hidden, V = c.vocab;
  for (int id : tokens)
    if (id < 0 || id >= V) return InvalidArgument("token id out of range reached Forward");
  for (int r : logit_rows)
    if (r < 0 || r >= T) return InvalidArgument("logit row out of range");
  MOE_RETURN_IF_ERROR(Describe(tokens, chunks, logit_rows));

  // x = embed(tokens)                                                  [T, D]
  MOE_ASSIGN_OR_RETURN(float* x, x_.Get<float>(int64_t{T} * D));
  MOE_RETURN_IF_ERROR(gpu::Embed(ids_, embed_, T, D, x));
  // Each layer: x += attention; h = rmsnorm(x); x += experts(h), micro-batch by micro-batch.
  in_flight_ = false;
  experts_->BeginStep();
  Status layers = RunMicroBatches(
      c.layers, parts_,
      [&](int l, int i) {
        experts_->Attending(l);
        return AttendAndRoute(l, micro_[i]);
      },
      [&](int l, int i) { return Dispatch(l, i, micro_[i]); },
      [&](int l, int i) { return Combine(l, micro_[i]); });
  if (!layers.ok() && in_flight_) {
    // The workers wait mid-exchange: it ends, and the link with it (moves left queued would
    // hold the device); Runtime ends the job.
    if (linked()) link_->Abort();
    return experts_->Fail(layers);
  }
  MOE_RETURN_IF_ERROR(layers);
  auto t = Clock::now();
  // Keys that fell out of the window go back to their pools.
  if (c.sliding_window > 0)
    for (const SequenceChunk& chunk : chunks)
      chunk.cache->ReleaseBefore(chunk.start_pos + chunk.length - c.sliding_window + 1);

  // logits = lm_head(rmsnorm(x)) for the wanted rows (none for a prompt's early chunks) [R, V]
  if (R > 0) {
    MOE_ASSIGN_OR_RETURN(float* rows, h_.Get<float>(int64_t{std::max(T, R)} * D));
    MOE_ASSIGN_OR_RETURN(float* normed, attn_.Get<float>(int64_t{R} * D));
    MOE_ASSIGN_OR_RETURN(uint16_t* nb, hb_.Get<uint16_t>(int64_t{R} * D));
    MOE_ASSIGN_OR_RETURN(float* out, logits_.Get<float>(int64_t{R} * V));
    MOE_RETURN_IF_ERROR(gpu::GatherRows(x, logit_rows_, R, D, rows));
    MOE_RETURN_IF_ERROR(gpu::RmsNorm(rows, final_norm_, c.rms_norm_eps, R, D, normed));
    MOE_RETURN_IF_ERROR(gpu::ToBf16(normed, int64_t{R} * D, nb));
    MOE_RETURN_IF_ERROR(gpu::GemmBf16(nb, R, D, lm_head_, V, D, D, false, out));
    if (logits) MOE_RETURN_IF_ERROR(gpu::CopyToHost(logits, out, int64_t{R} * V * sizeof(float)));
  }
  MOE_RETURN_IF_ERROR(gpu::Synchronize());
  if (stats_) {
    Lap(t, &stats_->seconds.lm_head);
    stats_->layer_passes += c.layers;
    stats_->seconds.forward += std::chrono::duration<double>(Clock::now() - t_start).count();
  }
  return Status::Ok();
}

Status GpuForward::Sample(const std::vector<Sampler*>& samplers, std::vector<int>* ids) {
  const int n = static_cast<int>(samplers.size());
  if (n > R_) return Internal("more samplers than logit rows in the last Forward");
  std::vector<gpu::SampleSpec> specs;
  for (Sampler* s : samplers) {
    const SamplingParams& p = s->params();
    specs.push_back({p.temperature, p.top_k, p.top_p, s->NextBits()});
  }
  MOE_ASSIGN_OR_RETURN(float* logits, logits_.Get<float>(int64_t{R_} * c_.vocab));
  return sampler_.Sample(logits + int64_t{R_ - n} * c_.vocab, n, c_.vocab, specs, ids);
}

}  // namespace moe
