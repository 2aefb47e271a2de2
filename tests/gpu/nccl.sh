#!/usr/bin/env bash
# The NCCL exchange: the coordinator and its workers each on a GPU of their own, rows and
# answers moving GPU to GPU, against the same ranks exchanging through host memory and against
# one process, also with two micro-batches (ping-pong). Greedy tokens identical, logits within
# 2e-2 of the largest. With MOE_GPU_LIBRARY set (tests/gpu/emulated.sh), every rank takes an
# emulated GPU of its own, and NCCL is the emulated one: there the NCCL runs must give the same
# bits as the same protocol carried by MPI (mpi-link), and --gpu-exchange auto must choose
# NCCL. Skips (77) where fewer than two GPUs are visible (NCCL cannot put two ranks on one GPU).
source "$(dirname "$0")/common.sh"
if [ -n "${MOE_GPU_LIBRARY:-}" ]; then
  export MOE_EMULATED_GPUS=3 TMPDIR=$SCRATCH  # (the emulated NCCL's moves go there)
  MPIRUN+=(-x MOE_GPU_LIBRARY -x MOE_EMULATED_GPUS)
  gpus=3
else
  gpus=$(nvidia-smi --list-gpus 2>/dev/null | grep -c "^GPU" || true)
fi
if [ "${gpus:-0}" -lt 2 ]; then
  echo "SKIP: the NCCL exchange needs two GPUs or more; ${gpus:-0} visible"
  exit 77
fi
ranks=$((gpus < 3 ? gpus : 3))
PROMPT="1 5 9 200 3 17 44 80 81 82 83 84 99 7"
for model in mixtral-bf16-sharded mixtral-window; do
  run() {  # name, ranks, extra flags...
    local name=$1 n=$2 cmd=("$MOE")
    shift 2
    [ "$n" -gt 1 ] && cmd=("${MPIRUN[@]}" -np "$n" "$MOE")
    "${cmd[@]}" generate --device cuda "$@" --model "$DATA/models/$model" \
      --prompt-ids "$PROMPT" --max-tokens 12 --ignore-eos --dump-logits "$SCRATCH/$name" \
      --json > "$SCRATCH/$name.json" 2> "$SCRATCH/$name.err" || {
      cat "$SCRATCH/$name.err"
      fail "$model: $name"
    }
  }
  run "$model-1" 1
  run "$model-host" "$ranks" --gpu-exchange host
  run "$model-nccl" "$ranks" --gpu-exchange nccl
  grep -q "goes GPU to GPU over NCCL" "$SCRATCH/$model-nccl.err" ||
    fail "$model: --gpu-exchange nccl did not say it exchanges over NCCL"
  compare_logits "$SCRATCH/$model-1" "$SCRATCH/$model-host"
  compare_logits "$SCRATCH/$model-1" "$SCRATCH/$model-nccl"
  compare_logits "$SCRATCH/$model-host" "$SCRATCH/$model-nccl"
  echo "ok: $model, $ranks ranks over NCCL == through host memory == one process"
  run "$model-nccl-pp" "$ranks" --gpu-exchange nccl --micro-batches 2
  compare_logits "$SCRATCH/$model-1" "$SCRATCH/$model-nccl-pp"
  echo "ok: $model, two micro-batches over NCCL == one process"
  if [ -n "${MOE_GPU_LIBRARY:-}" ]; then
    run "$model-mpi-link" "$ranks" --gpu-exchange mpi-link
    run "$model-auto" "$ranks" --gpu-exchange auto
    grep -q "goes GPU to GPU over NCCL" "$SCRATCH/$model-auto.err" ||
      fail "$model: --gpu-exchange auto did not choose NCCL with a GPU for every rank"
    for other in nccl-pp mpi-link auto; do
      for part in prompt gen; do
        same_bytes "$SCRATCH/$model-nccl.$part.npy" "$SCRATCH/$model-$other.$part.npy"
      done
    done
    echo "ok: $model, on the emulated GPUs NCCL == mpi-link == auto == two micro-batches," \
      "bit for bit"
  fi
done
