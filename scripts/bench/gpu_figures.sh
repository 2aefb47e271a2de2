#!/usr/bin/env bash
# The GPU figures ARCHITECTURE.md ("GPU") reports, each through scripts/bench/gpu.sh (medians
# beside the bandwidth probe), on synthetic Mixtral 8x7B shapes cut to 8 layers (23.7 GB of
# bf16 weights: one 80 GB GPU holds them twice over, for two ranks sharing it).
#
#   scripts/bench/gpu_figures.sh [--rounds R] [table|split|streams|exchange|pingpong]...
#
#   table     one rank and coordinator + worker host-staged, at batch 1 and batch 64
#   split     batch-1 decode at a 2048-token context (split-K decode attention)
#   streams   --gpu-expert-streams 1 against the default 4, at batch 1 and 64
#   exchange  coordinator + worker over mpi-link, at batch 1 and 64
#   pingpong  coordinator + worker host-staged at batch 64, with one micro-batch and two
#
# With no group, all five. Each line of the output names its configuration.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=3
groups=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    table|split|streams|exchange|pingpong) groups+=("$1"); shift ;;
    *) echo "gpu_figures.sh: unknown argument '$1' (groups: table split streams exchange" \
            "pingpong)" >&2
       exit 2 ;;
  esac
done
[ ${#groups[@]} -gt 0 ] || groups=(table split streams exchange pingpong)

model=(--synthetic mixtral-8x7b --layers 8 --gen 64 --reps 2)
batch1=(--prompt 128 --batch 1)
batch64=(--prompt 16 --batch 64)
figure() {  # NP BENCH_ARGS...
  local np=$1
  shift
  echo "== np $np: $*"
  scripts/bench/gpu.sh --rounds "$rounds" --np "$np" -- "${model[@]}" "$@"
}
for g in "${groups[@]}"; do
  case "$g" in
    table)
      figure 1 "${batch1[@]}"
      figure 1 "${batch64[@]}"
      figure 2 "${batch1[@]}" --gpu-exchange host
      figure 2 "${batch64[@]}" --gpu-exchange host ;;
    split)
      figure 1 --prompt 8 --batch 1
      figure 1 --prompt 2048 --batch 1 ;;
    streams)
      for streams in 1 4; do
        figure 1 "${batch1[@]}" --gpu-expert-streams "$streams"
        figure 1 "${batch64[@]}" --gpu-expert-streams "$streams"
      done ;;
    exchange)
      figure 2 "${batch1[@]}" --gpu-exchange mpi-link
      figure 2 "${batch64[@]}" --gpu-exchange mpi-link ;;
    pingpong)
      for micro in 1 2; do
        figure 2 "${batch64[@]}" --gpu-exchange host --micro-batches "$micro"
      done ;;
  esac
done
