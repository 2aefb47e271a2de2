// The one wire format between coordinator and workers, included by both sides.
// Index legend: D = hidden, K = experts per token, B = ffn blocks per expert.
//
// Each layer is two exchanges (common/transport.h), counts travelling ahead of bytes:
//
// dispatch, coordinator -> worker:
//   DispatchHeader
//   rows x { int32 n; int32 expert[K]; float weight[K]; float hidden[D] }
//     n experts of one token, the first n of its id-sorted list, all held whole by this worker
//     (a run), or n = 1: one later expert, or an expert the worker holds a slice of.
//
// combine, worker -> coordinator:
//   ResultHeader
//   vectors x float[D], row by row: one vector per row of whole experts, the weighted sum of its
//   experts' outputs added in id order; or, for a slice, one unweighted partial output per held
//   ffn block, in block order (the coordinator adds the blocks of all owners in block order,
//   then applies the routing weight).
//
// A dispatch with command kStop ends the worker loop; it carries no rows.
//
// With `link` set (every rank on a GPU of its own, common/gpu_link.h) the messages keep only
// the small parts: a dispatch row is { n; expert[K]; weight[K] } with no hidden, and a combine
// message is its ResultHeader alone. The hidden rows ([rows, D] bf16, in message order) and the
// answer vectors ([vectors, D] f32) travel between the GPUs over the link, queued after the
// messages that describe them.
//
// With two micro-batches every rank exchanges, per layer: dispatch A, combine A, dispatch B,
// combine B, as with one. The coordinator runs B's attention between A's dispatch and combine
// and the next layer's A's between B's, so the workers' experts run beside it
// (coordinator/micro_batches.h).
#pragma once

#include <cstdint>

namespace moe::wire {

constexpr uint32_t kDispatchMagic = 0x44454f4d;  // "MOED"
constexpr uint32_t kResultMagic = 0x52454f4d;    // "MOER"

enum Command : uint32_t { kLayer = 1, kStop = 2 };

struct DispatchHeader {
  uint32_t magic = kDispatchMagic;
  uint32_t command = kLayer;
  int32_t layer = 0;
  int32_t rows = 0;
  int64_t step = 0;
  int16_t micro_batch = 0;    // which micro-batch of the step this is
  int16_t micro_batches = 1;  // 2: ping-pong (see coordinator/model.cc), else 1
  uint32_t link = 0;          // 1: rows and answers travel over the GPU link
};
static_assert(sizeof(DispatchHeader) == 32, "scripts/scaling/scaling_common.py counts on it");

struct ResultHeader {
  uint32_t magic = kResultMagic;
  int32_t layer = 0;
  int32_t vectors = 0;
  int32_t rows_received = 0;   // rows of the dispatch it answers (conservation check)
  int64_t step = 0;
  double compute_seconds = 0;  // the worker's expert time for this layer
};

// Bytes of one dispatched row (D = 0: over the link, the hidden travels apart).
inline int64_t RowBytes(int K, int D) {
  return int64_t{4} * (1 + K) + int64_t{4} * K + int64_t{4} * D;
}

}  // namespace moe::wire
