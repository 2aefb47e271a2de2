#!/usr/bin/env bash
# Decode (and prefill) speed of `mpirun -np N` against one process with the same total
# threads, in alternating runs: the ratio of each pair is taken in the same minute of a shared,
# noisy machine, and the median over --rounds pairs is reported with its spread.
#
#   scripts/bench/ranks_ratio.sh [--rounds 9] [--np 3] [--] BENCH_ARGS...
#   scripts/bench/ranks_ratio.sh --np 3 -- --synthetic bench-1b --prompt 4 --gen 96 --reps 3 \
#       --placement deploy/placements/split.json
# Flags that only mean something with several ranks (--placement, --micro-batches,
# --pin-threads) are given to the mpirun runs alone.
rounds=9
np=3
source "$(dirname "$0")/common.sh"
parse_rounds_and_np "$@"
[ ${#bench_args[@]} -gt 0 ] || bench_args=(--synthetic bench-1b --prompt 4 --gen 96 --reps 3
  --placement deploy/placements/split.json)
single=() multi=()
set -- "${bench_args[@]}"
while [ $# -gt 0 ]; do
  case "$1" in
    --placement|--micro-batches|--pin-threads) multi+=("$1" "$2"); shift 2 ;;
    *) single+=("$1"); multi+=("$1"); shift ;;
  esac
done
for r in $(seq "$rounds"); do
  build/moe bench "${single[@]}" --json > "$out/one.$r" 2> "$out/err.one.$r"
  mpirun --oversubscribe -np "$np" build/moe bench "${multi[@]}" --json > "$out/many.$r" \
    2> "$out/err.many.$r"
done
python3 - "$out" "$rounds" "$np" <<'PY'
import json, statistics, sys
out, rounds, np = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = {"decode_tok_s": [], "prefill_tok_s": []}
for r in range(1, rounds + 1):
    one = json.load(open(f"{out}/one.{r}"))
    many = json.load(open(f"{out}/many.{r}"))
    for key in rows:
        rows[key].append((one[key]["median"], many[key]["median"]))
print(f"model: {many['model']}  isa: {many['isa']}  threads: {one['threads_rank0']} (one process)"
      f"  ranks: {np}  prompt {many['prompt']}  gen {many['gen']}  ({rounds} alternating pairs)")
print(f"{'':16}{'one process':>14}{f'-np {np}':>10}{'ratio':>9}{'min':>8}{'max':>8}")
for key, pairs in rows.items():
    ratios = [m / o for o, m in pairs]
    print(f"{key:16}{statistics.median(o for o, _ in pairs):14.1f}"
          f"{statistics.median(m for _, m in pairs):10.1f}{statistics.median(ratios):9.3f}"
          f"{min(ratios):8.3f}{max(ratios):8.3f}")
PY
