#!/usr/bin/env bash
# GPU figures: `moe bench --device cuda` beside the GPU bandwidth probe, interleaved, with batch-1
# decode reported as a fraction of the read bandwidth measured in the same round. It prints the
# median (and the spread) over --rounds rounds.
#
#   scripts/bench/gpu.sh [--rounds 3] [--np N] [--] BENCH_ARGS...
#   scripts/bench/gpu.sh -- --synthetic mixtral-8x7b --layers 8 --batch 1 --prompt 128 --gen 64
#   scripts/bench/gpu.sh --np 2 -- --synthetic mixtral-8x7b --layers 8 --batch 64
#
# With --np 2 the coordinator and one worker share the GPU, and the rows between them cross
# host memory by MPI (the host-staged path).
rounds=3
np=1
source "$(dirname "$0")/common.sh"
parse_rounds_and_np "$@"
[ ${#bench_args[@]} -gt 0 ] ||
  bench_args=(--synthetic mixtral-8x7b --layers 8 --prompt 128 --gen 64 --reps 3)
for r in $(seq "$rounds"); do
  build/moe_probe_gpu_bandwidth --reps 20 > "$out/bw.$r"
  bench_once "$r" --device cuda "${bench_args[@]}"
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rows = []
for r in range(1, rounds + 1):
    bw = json.load(open(f"{out}/bw.{r}"))
    b = json.load(open(f"{out}/bench.{r}"))
    rows.append({
        "read_gb_s": bw["read_gb_s"], "copy_gb_s": bw["copy_gb_s"],
        "decode_tok_s": b["decode_tok_s"]["median"], "decode_gb_s": b["decode_gb_s"]["median"],
        "decode_bw_fraction": b["decode_gb_s"]["median"] / bw["read_gb_s"],
        "prefill_tok_s": b["prefill_tok_s"]["median"],
        "prefill_gflop_s": b["prefill_gflop_s"]["median"],
    })
print(f"model: {b['model']}  ranks: {b['ranks']}  {b['device']}  batch {b['batch']}  "
      f"prompt {b['prompt']}  gen {b['gen']}  ({rounds} rounds; probe: {bw['device']})")
print(f"{'':24}{'median':>10}{'min':>10}{'max':>10}")
for key in rows[0]:
    vals = [row[key] for row in rows]
    print(f"{key:24}{statistics.median(vals):10.3f}{min(vals):10.3f}{max(vals):10.3f}")
PY
