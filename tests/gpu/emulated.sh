#!/usr/bin/env bash
# The GPU path's host code where no GPU is: moe loads the emulated device
# (tests/emulated_gpu/: the device's own kernels run on the host, the GEMMs as loops, queued
# work run only when the host waits for it) in place of libmoe_gpu.so. tests/gpu/ranks.sh on
# it (one process, and the coordinator plus 1, 2 and 9 workers host-staged and over mpi-link,
# against the CPU; two micro-batches); tests/gpu/nccl.sh on it (3 ranks, each on an emulated
# GPU of its own, the rows moving over the emulated NCCL); then a context past 128 keys, so
# decode attention splits its keys: identical greedy tokens, logits within 2e-2. Then a prompt
# prefilled 5 tokens a step with no logits wanted before its last chunk (steps with no logit
# rows, which once made a launch of no blocks): the same tokens as the CPU. Last, workers lost
# mid-run, and a worker that hangs while the NCCL link opens.
export MOE_GPU_LIBRARY=${GPU_EMULATED:?path to libmoe_gpu_emulated.so}
bash "$(dirname "$0")/ranks.sh" || exit 1
bash "$(dirname "$0")/nccl.sh" || exit 1
source "$(dirname "$0")/common.sh"
prompt=$(seq 3 202 | tr '\n' ' ')
for device in cpu cuda; do
  "$MOE" generate --device "$device" --model "$DATA/models/mixtral-bf16-sharded" \
    --prompt-ids "$prompt" --max-tokens 3 --ignore-eos --dump-logits "$SCRATCH/long-$device" \
    --json \
    > "$SCRATCH/long-$device.json" 2> "$SCRATCH/long-$device.err" ||
    { cat "$SCRATCH/long-$device.err"; fail "long context on $device"; }
done
compare_logits "$SCRATCH/long-cpu" "$SCRATCH/long-cuda"
echo "ok: a 200-token context on the emulated GPU (split decode attention) == the CPU"
for device in cpu cuda; do
  "$MOE" generate --device "$device" --model "$DATA/models/mixtral-bf16-sharded" \
    --prompt-ids "$(seq 3 20 | tr '\n' ' ')" --max-tokens 4 --prefill-chunk 5 --json \
    > "$SCRATCH/chunked-$device.json" 2> "$SCRATCH/chunked-$device.err" ||
    { cat "$SCRATCH/chunked-$device.err"; fail "chunked prefill on $device"; }
done
"$PYTHON" - "$SCRATCH/chunked-cpu.json" "$SCRATCH/chunked-cuda.json" <<'PY' ||
import json, sys
a, b = (json.load(open(p))["generated_ids"] for p in sys.argv[1:])
assert a == b, (a, b)
PY
  fail "chunked prefill: the emulated GPU's tokens differ from the CPU's"
echo "ok: a prompt prefilled 5 tokens a step on the emulated GPU == the CPU"

# A worker lost mid-run on the GPU path with two micro-batches (its answers wait for rank 0
# without a deadline then) still ends the job within the rank timeout, naming it
# (tests/mpi/common.sh): stopped, host-staged, over mpi-link and over NCCL (each rank on an
# emulated GPU of its own); killed, over mpi-link and over NCCL.
export MOE_EMULATED_GPUS=3 TMPDIR=$SCRATCH
MPIRUN+=(-x MOE_GPU_LIBRARY -x MOE_EMULATED_GPUS -x TMPDIR)
for fault in "STOP host" "STOP mpi-link" "STOP nccl" "KILL mpi-link" "KILL nccl"; do
  read -r sig exchange <<< "$fault"
  # Over a GPU link the setup ends with its opening, which rank 0 logs.
  FAULT_AFTER=""
  [ "$exchange" = host ] || FAULT_AFTER="the expert exchange goes"
  fault_on_rank2 "$sig" "$MOE bench --device cuda --gpu-exchange $exchange" \
    "${MPIRUN[@]}" -np 3 "$MOE" bench --device cuda --gpu-exchange "$exchange" \
    --micro-batches 2 --model "$DATA/models/mixtral-bf16-sharded" --prompt 5 --gen 200 \
    --batch 6 --reps 5 --rank-timeout 3 --json
  echo "ok: SIG$sig on a worker of the emulated GPU ($exchange, two micro-batches)"
done

# A worker that hangs while the NCCL link opens (it stops itself in the emulated NCCL's join,
# or at its first move) ends the job within the rank timeout, the ranks that waited naming the
# step: NCCL's join, or the connection (NCCL does not say which rank is missing).
bench=("$MOE" bench --device cuda --gpu-exchange nccl --model "$DATA/models/mixtral-bf16-sharded"
  --prompt 5 --gen 4 --batch 2 --reps 1 --rank-timeout 3)
for stop in join move; do
  start=$SECONDS err="$SCRATCH/stop-$stop.err"
  MOE_EMULATED_NCCL_STOP=2:$stop "${MPIRUN[@]}" -x MOE_EMULATED_NCCL_STOP -np 3 "${bench[@]}" \
    > /dev/null 2> "$err" &
  await_job_end $! "${bench[*]}" "$err" "a worker stopped at its NCCL $stop"
  kill -9 $(rank_pids "${bench[*]}") 2> /dev/null || true  # a stopped rank outlives a SIGTERM
  [ "$JOB_RC" -ne 0 ] || fail "a worker stopped at its NCCL $stop: the job exited 0"
  # Ranks 0 and 1 both wait; whichever gives up first ends the job.
  step="NCCL's join (ncclCommInitRank)"
  [ $stop = join ] || step="NCCL's connection with"
  grep -q "$step.* did not finish within 3 s (--rank-timeout), seen from rank [01] " "$err" ||
    { cat "$err"; fail "a worker stopped at its NCCL $stop: no rank named $step"; }
  echo "ok: a worker stopped at its NCCL $stop ended the job with status $JOB_RC" \
    "in $((SECONDS - start)) s"
done
