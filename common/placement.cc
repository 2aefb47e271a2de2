#include "common/placement.h"

#include <algorithm>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/mapped_file.h"

namespace moe {
namespace {

void Finalize(Placement* p) {
  p->by_expert.assign(p->experts, {});
  for (int r = 0; r < p->ranks(); ++r) {
    auto& held = p->by_rank[r];
    std::sort(held.begin(), held.end(), [](const ExpertAssignment& a, const ExpertAssignment& b) {
      return a.expert != b.expert ? a.expert < b.expert : a.block_begin < b.block_begin;
    });
    for (const ExpertAssignment& a : held)
      p->by_expert[a.expert].push_back({r, a.block_begin, a.block_end});
  }
  for (auto& owners : p->by_expert)
    std::sort(owners.begin(), owners.end(), [](const Owner& a, const Owner& b) {
      return a.block_begin != b.block_begin ? a.block_begin < b.block_begin : a.rank < b.rank;
    });
}

// {"split": true}: worker w holds blocks [B w / W, B (w + 1) / W) of every expert.
Status ApplySplit(Placement* p) {
  const int W = p->workers, B = p->blocks;
  if (W > B)
    return InvalidArgument("\"split\" cuts each expert into " + std::to_string(B) +
                           " ffn blocks, too few for " + std::to_string(W) +
                           " workers; use at most " + std::to_string(B) + " workers");
  for (int w = 0; w < W; ++w)
    for (int e = 0; e < p->experts; ++e) p->by_rank[w + 1].push_back({e, B * w / W, B * (w + 1) / W});
  return Status::Ok();
}

// Parses `text` (discarded when it is not JSON), setting `*duplicate` to the first key given
// twice in one object: JSON keeps the last of two equal keys, and a file that says two things
// of one expert is refused instead.
nlohmann::json ParseNoticingDuplicateKeys(const std::string& text, std::string* duplicate) {
  std::vector<std::set<std::string>> open;  // the keys of each object being read
  nlohmann::json::parser_callback_t watch = [&](int, nlohmann::json::parse_event_t event,
                                                nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start) open.emplace_back();
    if (event == Event::object_end && !open.empty()) open.pop_back();
    if (event == Event::key && !open.empty() && duplicate->empty() &&
        !open.back().insert(parsed.get<std::string>()).second)
      *duplicate = parsed.get<std::string>();
    return true;
  };
  return nlohmann::json::parse(text, watch, false);
}

Status ApplyFile(const std::string& text, Placement* p) {
  std::string duplicate;
  auto j = ParseNoticingDuplicateKeys(text, &duplicate);
  if (!duplicate.empty())
    return InvalidArgument("key \"" + duplicate + "\" is given twice in one object; give it once");
  if (!j.is_discarded() && j.is_object() && j.size() == 1 && j.contains("split")) {
    if (j["split"] != true) return InvalidArgument("\"split\" must be true");
    return ApplySplit(p);
  }
  if (j.is_discarded() || !j.is_object() || !j.contains("experts") || !j["experts"].is_object())
    return InvalidArgument("expected a JSON object {\"experts\": {\"0\": [1], ...}} or {\"split\": true}");
  std::vector<bool> seen(p->experts, false);
  for (auto it = j["experts"].begin(); it != j["experts"].end(); ++it) {
    int e = -1;
    try {
      size_t used = 0;
      e = std::stoi(it.key(), &used);
      if (used != it.key().size()) e = -1;
    } catch (const std::exception&) {
    }
    if (e < 0 || e >= p->experts || std::to_string(e) != it.key())
      return InvalidArgument("expert '" + it.key() + "' is not an expert id in [0, " +
                             std::to_string(p->experts) + ")");
    if (seen[e]) return InvalidArgument("expert " + it.key() + " is listed twice");
    if (!it.value().is_array() || it.value().empty())
      return InvalidArgument("expert " + it.key() + " must map to a non-empty list of ranks");
    std::vector<int> ranks;
    for (const auto& r : it.value()) {
      if (!r.is_number_integer() || r.get<int64_t>() < 1 || r.get<int64_t>() > p->workers)
        return InvalidArgument("expert " + it.key() + ": rank " + r.dump() +
                               " is not a worker rank in [1, " + std::to_string(p->workers) + "]");
      if (std::count(ranks.begin(), ranks.end(), r.get<int>()))
        return InvalidArgument("expert " + it.key() + " lists rank " + r.dump() + " twice");
      ranks.push_back(r.get<int>());
    }
    seen[e] = true;
    for (int r : ranks) p->by_rank[r].push_back({e, 0, p->blocks});
  }
  for (int e = 0; e < p->experts; ++e)
    if (!seen[e]) return InvalidArgument("expert " + std::to_string(e) + " has no rank; list every expert");
  for (int r = 1; r <= p->workers; ++r)
    if (p->by_rank[r].empty())
      return InvalidArgument("worker rank " + std::to_string(r) + " holds no expert; give it one "
                             "or start fewer ranks");
  return Status::Ok();
}

}  // namespace

StatusOr<Placement> ComputePlacement(const ModelConfig& config, int workers,
                                     const std::string& placement_json) {
  Placement p;
  p.workers = workers;
  p.experts = config.is_moe() ? config.num_experts : 1;
  p.blocks = FfnBlocks(config.ffn);
  const int E = p.experts, B = p.blocks;
  if (workers < 0) return InvalidArgument("the number of workers must be >= 0");
  if (workers > E * B)
    return InvalidArgument(std::to_string(workers) + " workers is more than the " +
                           std::to_string(E * B) + " expert blocks of this model (" +
                           std::to_string(E) + " experts x " + std::to_string(B) +
                           " blocks); start at most " + std::to_string(E * B + 1) + " ranks");
  p.by_rank.assign(workers + 1, {});
  if (!placement_json.empty()) {
    if (workers == 0) return InvalidArgument("a placement file needs worker ranks (mpirun -np N, N >= 2)");
    MOE_RETURN_IF_ERROR(ApplyFile(placement_json, &p));
  } else if (workers == 0) {
    for (int e = 0; e < E; ++e) p.by_rank[0].push_back({e, 0, B});
  } else if (workers <= E) {
    for (int w = 0; w < workers; ++w)
      for (int e = E * w / workers; e < E * (w + 1) / workers; ++e)
        p.by_rank[w + 1].push_back({e, 0, B});
  } else {
    // Contiguous ranges of the expert-major block sequence, cut at expert boundaries.
    for (int w = 0; w < workers; ++w) {
      const int u0 = E * B * w / workers, u1 = E * B * (w + 1) / workers;
      for (int u = u0; u < u1;) {
        const int e = u / B, end = std::min(u1, (e + 1) * B);
        p.by_rank[w + 1].push_back({e, u - e * B, end - e * B});
        u = end;
      }
    }
  }
  Finalize(&p);
  return p;
}

StatusOr<Placement> LoadPlacement(const ModelConfig& config, int workers, const std::string& path) {
  if (path.empty()) return ComputePlacement(config, workers);
  MOE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  auto p = ComputePlacement(config, workers, text);
  if (!p.ok()) return p.status().WithContext("placement file " + path);
  return p;
}

std::string Placement::Describe(const ModelConfig& config) const {
  const double block_bytes = 3.0 * config.hidden * (config.ffn / blocks) * 2.0 * config.layers;
  std::ostringstream s;
  s << "placement: " << workers << " worker(s), " << experts << " expert(s) x " << blocks
    << " ffn blocks; bytes at bf16 for all " << config.layers << " layers\n";
  for (int r = 0; r < ranks(); ++r) {
    if (by_rank[r].empty()) continue;
    double bytes = 0;
    s << "  rank " << r << ":";
    for (const ExpertAssignment& a : by_rank[r]) {
      s << " e" << a.expert;
      if (a.block_end - a.block_begin != blocks) s << "[" << a.block_begin << ":" << a.block_end << "]";
      bytes += block_bytes * (a.block_end - a.block_begin);
    }
    s << "  (" << std::fixed << std::setprecision(1) << bytes / (1 << 20) << " MiB)\n";
  }
  return s.str();
}

}  // namespace moe
