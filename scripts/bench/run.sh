#!/usr/bin/env bash
# Runs `moe bench` beside the bandwidth and FMA probes, interleaved, and reports each figure as
# a fraction of the probe measured next to it: decode GB/s over read bandwidth, prefill GFLOP/s
# over FMA peak. These machines are shared and noisy, so it prints the median (and the spread)
# over --rounds interleaved rounds.
#
#   scripts/bench/run.sh [--rounds 5] [--np N] [--] BENCH_ARGS...
#   scripts/bench/run.sh -- --synthetic bench-1b --prompt 128 --gen 32 --reps 3
#   scripts/bench/run.sh --np 3 -- --synthetic bench-1b --prompt 128 --gen 32 --reps 3
rounds=5
np=1
source "$(dirname "$0")/common.sh"
parse_rounds_and_np "$@"
[ ${#bench_args[@]} -gt 0 ] || bench_args=(--synthetic bench-1b --prompt 128 --gen 32 --reps 3)
for r in $(seq "$rounds"); do
  build/moe_probe_bandwidth --reps 3 > "$out/bw.$r"
  build/moe_probe_fma --reps 2 > "$out/fma.$r"
  bench_once "$r" "${bench_args[@]}"
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rows = []
for r in range(1, rounds + 1):
    bw = json.load(open(f"{out}/bw.{r}"))
    fma = json.load(open(f"{out}/fma.{r}"))
    b = json.load(open(f"{out}/bench.{r}"))
    rows.append({
        "read_gb_s": bw["read_gb_s"], "fma_gflop_s": fma["fma_gflop_s"],
        "decode_tok_s": b["decode_tok_s"]["median"], "decode_gb_s": b["decode_gb_s"]["median"],
        "prefill_tok_s": b["prefill_tok_s"]["median"], "prefill_gflop_s": b["prefill_gflop_s"]["median"],
        "decode_bw_fraction": b["decode_gb_s"]["median"] / bw["read_gb_s"],
        "prefill_peak_fraction": b["prefill_gflop_s"]["median"] / fma["fma_gflop_s"],
        "exposed_moe_share": b["stats"]["exposed_moe_share"],
    })
print(f"model: {b['model']}  ranks: {b['ranks']}  isa: {b['isa']}  batch {b['batch']}  "
      f"prompt {b['prompt']}  gen {b['gen']}  ({rounds} interleaved rounds)")
print(f"{'':24}{'median':>10}{'min':>10}{'max':>10}")
for key in rows[0]:
    vals = [row[key] for row in rows]
    print(f"{key:24}{statistics.median(vals):10.3f}{min(vals):10.3f}{max(vals):10.3f}")
PY
