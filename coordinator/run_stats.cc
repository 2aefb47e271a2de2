#include "coordinator/run_stats.h"

#include <algorithm>
#include <iomanip>
#include <sstream>

namespace moe {

void RunStats::Reset(int layers, int experts, int ranks) {
  *this = RunStats();
  expert_tokens.assign(layers, std::vector<int64_t>(experts, 0));
  rank_rows.assign(ranks, 0);
  rank_bytes.assign(ranks, 0);
  for (auto* v : {&rows_sent, &rows_received, &vectors_expected, &vectors_returned})
    v->assign(layers, std::vector<int64_t>(ranks, 0));
}

void RunStats::CountRoutes(int layer, const std::vector<int>& experts) {
  std::vector<int64_t>& tokens = expert_tokens[layer];
  std::vector<bool> hit(tokens.size(), false);
  for (int e : experts) {
    ++tokens[e];
    hit[e] = true;
  }
  experts_touched += std::count(hit.begin(), hit.end(), true);
}

nlohmann::json RunStats::ToJson() const {
  const double per = layer_passes > 0 ? 1e6 / static_cast<double>(layer_passes) : 0;
  return {{"seconds",
           {{"attention", seconds.attention},
            {"routing", seconds.routing},
            {"dispatch", seconds.dispatch},
            {"expert", seconds.expert},
            {"combine", seconds.combine},
            {"lm_head", seconds.lm_head},
            {"moe_wait", seconds.moe_wait},
            {"forward", seconds.forward}}},
          {"exposed_moe_share", seconds.forward > 0 ? seconds.moe_wait / seconds.forward : 0.0},
          {"us_per_layer",
           {{"attention", seconds.attention * per},
            {"routing", seconds.routing * per},
            {"dispatch", seconds.dispatch * per},
            {"expert", seconds.expert * per},
            {"combine", seconds.combine * per}}},
          {"layer_passes", layer_passes},
          {"expert_tokens", expert_tokens},
          {"rank_rows", rank_rows},
          {"rank_bytes", rank_bytes},
          {"conservation",
           {{"rows_sent", rows_sent},
            {"rows_received", rows_received},
            {"vectors_expected", vectors_expected},
            {"vectors_returned", vectors_returned},
            {"ok", rows_sent == rows_received && vectors_expected == vectors_returned}}}};
}

std::string RunStats::ToText() const {
  std::ostringstream s;
  const double per = layer_passes > 0 ? 1e6 / static_cast<double>(layer_passes) : 0;
  s << std::fixed << std::setprecision(1);
  s << "time per layer (us, mean over " << layer_passes << " layer passes): attention "
    << seconds.attention * per << "  routing " << seconds.routing * per << "  dispatch "
    << seconds.dispatch * per << "  expert " << seconds.expert * per << "  combine "
    << seconds.combine * per << "\n";
  s << "tokens per expert:\n";
  for (size_t l = 0; l < expert_tokens.size(); ++l) {
    s << "  layer " << std::setw(3) << l << ":";
    for (int64_t n : expert_tokens[l]) s << " " << std::setw(6) << n;
    s << "\n";
  }
  s << "rows per rank:";
  for (size_t r = 0; r < rank_rows.size(); ++r) s << "  " << r << ": " << rank_rows[r];
  s << "\n";
  return s.str();
}

}  // namespace moe
