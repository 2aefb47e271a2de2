#!/usr/bin/env bash
# The GPU path across ranks: one process (every expert on its GPU, the rows never leave it)
# against the coordinator plus 1, 2 and 9 workers sharing the GPU (9 workers slice the 8
# experts), and against the CPU. The workers exchange rows through host memory inside the MPI
# messages (host), and as the NCCL path does but with MPI as the carrier (mpi-link). Greedy
# tokens must be identical and logits within 2e-2 of the largest (tests/gpu/common.sh). With
# two micro-batches (ping-pong; 3 ranks, both exchanges) every prefill step is cut in two,
# its middle chunk across them. Skips (77) where no GPU is visible. RANKS (default "2 3 10")
# picks the rank counts; with MOE_GPU_LIBRARY set, every rank loads that GPU path
# (tests/gpu/emulated.sh), and ping-pong must give the same bits as one micro-batch there
# (its GEMMs are loops, which give a row the same sums whatever the rows beside it; cuBLAS
# picks its kernels by shape).
source "$(dirname "$0")/common.sh"
[ -z "${MOE_GPU_LIBRARY:-}" ] || MPIRUN+=(-x MOE_GPU_LIBRARY)
if ! "$MOE" generate --device cuda --model "$DATA/models/mistral-bf16" --prompt-ids "1" \
  --max-tokens 1 > /dev/null 2> "$SCRATCH/probe.err"; then
  # Only a missing GPU skips; any other failure of the GPU path is a failure.
  grep -q "use --device cpu or auto" "$SCRATCH/probe.err" || fail "$(cat "$SCRATCH/probe.err")"
  cat "$SCRATCH/probe.err"
  exit 77
fi
PROMPT="1 5 9 200 3 17 44 80 81 82 83 84 99 7"
for model in mixtral-bf16-sharded mixtral-window; do
  run() {  # name, ranks, device, extra flags...
    local cmd=("$MOE")
    [ "$2" -gt 1 ] && cmd=("${MPIRUN[@]}" -np "$2" "$MOE")
    "${cmd[@]}" generate --device "$3" "${@:4}" --model "$DATA/models/$model" \
      --prompt-ids "$PROMPT" --max-tokens 12 --ignore-eos --dump-logits "$SCRATCH/$1" --json \
      > "$SCRATCH/$1.json" 2> "$SCRATCH/$1.err" || { cat "$SCRATCH/$1.err"; fail "$model: $1"; }
  }
  run "$model-cpu" 1 cpu
  run "$model-gpu-1" 1 cuda
  compare_logits "$SCRATCH/$model-cpu" "$SCRATCH/$model-gpu-1"
  for n in ${RANKS:-2 3 10}; do
    for exchange in host mpi-link; do
      run "$model-gpu-$n-$exchange" "$n" cuda --gpu-exchange "$exchange"
      compare_logits "$SCRATCH/$model-gpu-1" "$SCRATCH/$model-gpu-$n-$exchange"
      echo "ok: $model, coordinator and $((n - 1)) worker(s) on the GPU ($exchange) == one" \
        "process on the GPU"
    done
  done
  for exchange in host mpi-link; do
    run "$model-pp-$exchange" 3 cuda --gpu-exchange "$exchange" --micro-batches 2
    compare_logits "$SCRATCH/$model-gpu-1" "$SCRATCH/$model-pp-$exchange"
    if [ -n "${MOE_GPU_LIBRARY:-}" ]; then
      one="$model-gpu-3-$exchange"
      [ -e "$SCRATCH/$one.json" ] || run "$one" 3 cuda --gpu-exchange "$exchange"
      for part in prompt gen; do
        same_bytes "$SCRATCH/$one.$part.npy" "$SCRATCH/$model-pp-$exchange.$part.npy"
      done
    fi
    echo "ok: $model, two micro-batches on the GPU ($exchange, 3 ranks) == one process"
  done
done
