// Which rank holds which experts: a pure function of (config, number of workers, optional
// placement file), so every rank computes the same answer.
//
// Ranks 1..W are workers (W = 0: the one process, rank 0, holds everything). With W <= E,
// whole experts are spread evenly in contiguous runs. With W > E, each expert's ffn dimension is
// cut into FfnBlocks(F) blocks, the E * B blocks (expert-major) are split into W contiguous
// ranges, and a rank holds the blocks of its range; partial outputs are summed in combine.
// A placement file pins whole experts to ranks; listing several ranks replicates an expert, and
// the replicas share the tokens routed to it. Or it splits every expert across all workers
// (each holds an equal run of every expert's ffn blocks): every worker works on every token, so
// the load is even whatever the routing (batch-1 decode on few workers), at the cost of sending
// each token to every worker.
#pragma once

#include <string>
#include <vector>

#include "common/model_config.h"
#include "common/status.h"

namespace moe {

// Blocks [block_begin, block_end) of `expert`, held in every layer.
struct ExpertAssignment {
  int expert = 0;
  int block_begin = 0;
  int block_end = 0;
};

struct Owner {
  int rank = 0;
  int block_begin = 0;
  int block_end = 0;
};

struct Placement {
  int workers = 0;       // W; ranks 1..W hold experts (rank 0 when W == 0)
  int experts = 0;       // E (1 for a dense model: the MLP)
  int blocks = 0;        // B = FfnBlocks(F): blocks per expert
  std::vector<std::vector<ExpertAssignment>> by_rank;  // [ranks][held], sorted by expert
  std::vector<std::vector<Owner>> by_expert;           // [E][owners], sorted by block, then rank

  int ranks() const { return static_cast<int>(by_rank.size()); }
  // True when expert e lives whole on each of its owners (no slicing; maybe replicated).
  bool whole(int e) const { return by_expert[e][0].block_end - by_expert[e][0].block_begin == blocks; }
  // A human-readable table with bytes per rank (expert weights only, for `moe inspect`).
  std::string Describe(const ModelConfig& config) const;
};

// `placement_json` is the text of a placement file, or empty for the default.
// File format: {"experts": {"0": [1], "1": [1, 2], ...}} mapping every expert id to the worker
// ranks (1..W) that hold it whole; several ranks make replicas. Or {"split": true}.
StatusOr<Placement> ComputePlacement(const ModelConfig& config, int workers,
                                     const std::string& placement_json = "");

// Reads a placement file (errors name the file).
StatusOr<Placement> LoadPlacement(const ModelConfig& config, int workers, const std::string& path);

}  // namespace moe
