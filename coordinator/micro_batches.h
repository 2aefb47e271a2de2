// A step's rows, their cut into two micro-batches for ping-pong (--micro-batches 2), and the
// order of a step's work over layers and micro-batches, which the coordinator's forward pass
// keeps on the CPU (coordinator/model.cc) and on a GPU (coordinator/gpu_forward.cc).
#pragma once

#include <algorithm>
#include <vector>

#include "common/status.h"
#include "coordinator/kv_cache.h"

namespace moe {

// A contiguous run of one sequence's tokens inside a step.
struct SequenceChunk {
  KvCache* cache = nullptr;
  int start_pos = 0;  // position of the chunk's first token
  int length = 0;
};

// Rows [row0, row0 + rows) of a step and the chunks that lay them out.
struct MicroBatchRows {
  int row0 = 0, rows = 0;
  std::vector<SequenceChunk> chunks;
};

// The step's T rows (`chunks` end to end) as one micro-batch, or, for `micro_batches` 2 and
// T >= 2, as two halves. A chunk that straddles the middle is cut in two: its second part
// attends after its first in every layer, so it finds their keys in the cache.
inline std::vector<MicroBatchRows> SplitMicroBatches(const std::vector<SequenceChunk>& chunks,
                                                     int T, int micro_batches) {
  if (micro_batches != 2 || T < 2) return {{0, T, chunks}};
  std::vector<MicroBatchRows> parts(2);
  const int half = T / 2;
  int row = 0;
  for (const SequenceChunk& c : chunks) {
    const int first = std::clamp(half - row, 0, c.length);
    if (first > 0) parts[0].chunks.push_back({c.cache, c.start_pos, first});
    if (c.length > first)
      parts[1].chunks.push_back({c.cache, c.start_pos + first, c.length - first});
    row += c.length;
  }
  parts[0].rows = half;
  parts[1].row0 = half;
  parts[1].rows = T - half;
  return parts;
}

// A step's layers over its `parts` micro-batches (1 or 2), in the order every rank keeps for
// the exchanges: per layer, micro-batch after micro-batch, its dispatch then its combine. With
// two, the other micro-batch's attention runs between them, while the workers compute
// (ping-pong); with one, the next layer's attention needs the answer, so it comes after.
// attend(l, i) also routes; attend, dispatch and combine (l, i) return a Status.
template <typename Attend, typename Dispatch, typename Combine>
Status RunMicroBatches(int layers, int parts, Attend&& attend, Dispatch&& dispatch,
                       Combine&& combine) {
  MOE_RETURN_IF_ERROR(attend(0, 0));
  MOE_RETURN_IF_ERROR(dispatch(0, 0));
  for (int l = 0; l < layers; ++l)
    for (int i = 0; i < parts; ++i) {
      const bool more = l + 1 < layers || i + 1 < parts;
      const int next_l = i + 1 < parts ? l : l + 1, next_i = (i + 1) % parts;
      if (more && parts > 1) MOE_RETURN_IF_ERROR(attend(next_l, next_i));  // workers: i's experts
      MOE_RETURN_IF_ERROR(combine(l, i));
      if (more && parts == 1) MOE_RETURN_IF_ERROR(attend(next_l, next_i));
      if (more) MOE_RETURN_IF_ERROR(dispatch(next_l, next_i));
    }
  return Status::Ok();
}

}  // namespace moe
