#!/usr/bin/env bash
# N ranks == 1 process, byte for byte: logits dumped by `moe generate` for N = 1, 2, 3, 5, 9, 10
# (10 ranks = 9 workers, more than the 8 experts, so experts are sliced across ranks).
source "$(dirname "$0")/common.sh"
PROMPT="1 5 9 200 3 17 44 80 81 82 83 84 99 7"
for model in mixtral-f32 mixtral-window mixtral-bf16-sharded mistral-window; do
  "$MOE" generate --model "$DATA/models/$model" --prompt-ids "$PROMPT" --max-tokens 12 \
    --ignore-eos --dump-logits "$SCRATCH/$model-1" --json > "$SCRATCH/$model-1.json"
  for n in 2 3 5 9 10; do
    # A dense model has one expert of 8 blocks: at most 9 ranks.
    [ "$model" = mistral-window ] && [ "$n" -gt 9 ] && continue
    "${MPIRUN[@]}" -np "$n" "$MOE" generate --model "$DATA/models/$model" --prompt-ids "$PROMPT" \
      --max-tokens 12 --ignore-eos --dump-logits "$SCRATCH/$model-$n" --json \
      > "$SCRATCH/$model-$n.json" 2> "$SCRATCH/$model-$n.err" || { cat "$SCRATCH/$model-$n.err"; fail "$model n=$n"; }
    same_bytes "$SCRATCH/$model-1.prompt.npy" "$SCRATCH/$model-$n.prompt.npy"
    same_bytes "$SCRATCH/$model-1.gen.npy" "$SCRATCH/$model-$n.gen.npy"
    echo "ok: $model with $n ranks is bit-identical to one process"
  done
done

# Ranks that share a host get their own cores unless told not to (or bound by the launcher),
# and pinning changes no bit.
model=mixtral-f32
for pin in on off; do
  "${MPIRUN[@]}" --bind-to none -np 3 "$MOE" generate --model "$DATA/models/$model" \
    --prompt-ids "$PROMPT" --max-tokens 12 --ignore-eos --pin-threads "$pin" \
    --dump-logits "$SCRATCH/pin-$pin" --json > /dev/null 2> "$SCRATCH/pin-$pin.err" \
    || { cat "$SCRATCH/pin-$pin.err"; fail "--pin-threads $pin"; }
  same_bytes "$SCRATCH/$model-1.gen.npy" "$SCRATCH/pin-$pin.gen.npy"
done
grep -q "pinned" "$SCRATCH/pin-off.err" && fail "--pin-threads off still pinned: $(cat "$SCRATCH/pin-off.err")"
grep -q "rank 0 .*pinned" "$SCRATCH/pin-on.err" && fail "rank 0 was pinned with one micro-batch"
cores=$(grep -o "rank [12] .*; pinned to cores\? [0-9,-]*" "$SCRATCH/pin-on.err" \
  | sed 's/.*pinned to cores\? //' | sort -u || true)
# Pinning applies where this process may use every online core (no cpuset or binding) and
# there are two of them for the two workers.
pins=$([ "$(nproc)" -ge 2 ] && [ "$(nproc)" -eq "$(getconf _NPROCESSORS_ONLN)" ] && echo yes || echo no)
[ "$pins" = no ] || [ "$(echo "$cores" | grep -c .)" -eq 2 ] \
  || fail "two workers on one host should be pinned to two shares of its cores: $(cat "$SCRATCH/pin-on.err")"
echo "ok: workers pinned to cores $(echo $cores); bit-identical with and without pinning"

# Ranks on one host exchange through shared-memory inboxes, and messages too big for a slot
# go by MPI: all by MPI (slots of 0 bytes), a mix (64- and 100-byte slots: most rows go by MPI,
# empty messages through the inbox; 100 is not a whole cache line) and the default give the
# same bits, with one micro-batch and with two.
for run in "0 1" "64 1" "100 2"; do
  read -r slot micro <<< "$run"
  MOE_SHM_SLOT_BYTES=$slot "${MPIRUN[@]}" -x MOE_SHM_SLOT_BYTES -np 3 "$MOE" generate \
    --model "$DATA/models/$model" --prompt-ids "$PROMPT" --max-tokens 12 --ignore-eos \
    --micro-batches "$micro" --dump-logits "$SCRATCH/slot-$slot" --json > /dev/null \
    2> "$SCRATCH/slot-$slot.err" || { cat "$SCRATCH/slot-$slot.err"; fail "MOE_SHM_SLOT_BYTES=$slot"; }
  same_bytes "$SCRATCH/$model-1.prompt.npy" "$SCRATCH/slot-$slot.prompt.npy"
  same_bytes "$SCRATCH/$model-1.gen.npy" "$SCRATCH/slot-$slot.gen.npy"
done
echo "ok: shared-memory slots of 0, 64 and 100 bytes (two micro-batches) are bit-identical to one process"
ls /dev/shm | grep -q "^moe-" && fail "shared-memory inboxes left behind: $(ls /dev/shm | grep '^moe-')"

# Micro-batch ping-pong (attention of one half overlapping the experts of the other) changes
# nothing either: every prefill step is split in two, with and without sliced experts.
for n in 1 3 10; do
  model=mixtral-window
  if [ "$n" = 1 ]; then run=("$MOE"); else run=("${MPIRUN[@]}" -np "$n" "$MOE"); fi
  "${run[@]}" generate --model "$DATA/models/$model" --prompt-ids "$PROMPT" --max-tokens 12 \
    --ignore-eos --micro-batches 2 --dump-logits "$SCRATCH/pp-$n" --json > /dev/null 2> "$SCRATCH/pp-$n.err" \
    || { cat "$SCRATCH/pp-$n.err"; fail "ping-pong n=$n"; }
  same_bytes "$SCRATCH/$model-1.prompt.npy" "$SCRATCH/pp-$n.prompt.npy"
  same_bytes "$SCRATCH/$model-1.gen.npy" "$SCRATCH/pp-$n.gen.npy"
  echo "ok: two micro-batches with $n rank(s) are bit-identical to one batch"
done

# Three experts per token: runs of experts on one rank must not change the order of additions.
TOP3="$SCRATCH/top3"
cp -r "$DATA/models/mixtral-f32" "$TOP3"
sed -i 's/"num_experts_per_tok": 2/"num_experts_per_tok": 3/' "$TOP3/config.json"
"$MOE" generate --model "$TOP3" --prompt-ids "$PROMPT" --max-tokens 8 --ignore-eos \
  --dump-logits "$SCRATCH/top3-1" --json > /dev/null
for n in 3 5; do
  "${MPIRUN[@]}" -np "$n" "$MOE" generate --model "$TOP3" --prompt-ids "$PROMPT" --max-tokens 8 \
    --ignore-eos --dump-logits "$SCRATCH/top3-$n" --json > /dev/null 2> "$SCRATCH/top3-$n.err" \
    || { cat "$SCRATCH/top3-$n.err"; fail "top-3 n=$n"; }
  same_bytes "$SCRATCH/top3-1.prompt.npy" "$SCRATCH/top3-$n.prompt.npy"
  same_bytes "$SCRATCH/top3-1.gen.npy" "$SCRATCH/top3-$n.gen.npy"
  echo "ok: top-3 routing with $n ranks is bit-identical to one process"
done
