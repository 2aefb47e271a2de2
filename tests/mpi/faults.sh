#!/usr/bin/env bash
# A worker killed (-9) or hung (SIGSTOP) mid-generation never hangs the job: it ends non-zero
# within a bounded time, naming the rank, host, layer and step. A worker that cannot load its
# shard, and ranks started with different models or binaries, fail the job at start; a bad
# input fails it before the load.
source "$(dirname "$0")/common.sh"
LONG="$SCRATCH/long"
cp -r "$DATA/models/mixtral-f32" "$LONG"
sed -i 's/"max_position_embeddings": 256/"max_position_embeddings": 65536/' "$LONG/config.json"

# A long generation on 3 ranks; rank 2 killed, then stopped (tests/mpi/common.sh).
for sig in KILL STOP; do
  fault_on_rank2 "$sig" "$MOE generate --model $LONG" \
    "${MPIRUN[@]}" -np 3 "$MOE" generate --model "$LONG" --prompt-ids "1 2 3" \
    --max-tokens 60000 --ignore-eos --json --rank-timeout 3
done

# A worker that cannot load its shard: expert 7's w1 has the wrong shape. Only its owner
# (rank 2 of 3 ranks: workers hold experts 0-3 and 4-7) reads it.
BAD="$SCRATCH/bad-shard"
cp -r "$DATA/models/mixtral-f32" "$BAD"
python3 - "$BAD/model.safetensors" <<'PY'
import json, struct, sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
name = "model.layers.1.block_sparse_moe.experts.7.w1.weight"
rows, cols = header[name]["shape"]
header[name]["shape"] = [cols, rows]  # same bytes, transposed shape
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (n - len(text))
assert len(text) == n
open(path, "wb").write(data[:8] + text + data[8 + n:])
PY
set +e
"${MPIRUN[@]}" -np 3 "$MOE" generate --model "$BAD" --prompt-ids "1 2" --max-tokens 1 > /dev/null 2> "$SCRATCH/shard.err"
rc=$?
set -e
[ $rc -ne 0 ] || fail "a bad shard was accepted"
grep -q "rank 2 on .*experts.7.w1.weight" "$SCRATCH/shard.err" || { cat "$SCRATCH/shard.err"; fail "bad shard: rank 2 and the tensor not named"; }
echo "ok: a worker that cannot load its shard fails the job at start (status $rc)"

# A bad input on rank 0 is refused before any rank loads (the bad shard above is never read):
# every rank leaves with status 2, none waits.
set +e
timeout 60 "${MPIRUN[@]}" -np 3 "$MOE" score --model "$BAD" --ids-file "$SCRATCH/no-such-ids" \
  > /dev/null 2> "$SCRATCH/input.err"
rc=$?
set -e
[ $rc -eq 2 ] || { cat "$SCRATCH/input.err"; fail "a missing --ids-file ended with status $rc, not 2"; }
grep -q "no-such-ids: cannot open" "$SCRATCH/input.err" || { cat "$SCRATCH/input.err"; fail "the missing file is not named"; }
! grep -q "w1.weight" "$SCRATCH/input.err" || fail "the model was loaded before the input was checked"
echo "ok: a bad input is refused before the ranks load"

# Ranks with different model directories (a different rope_theta) are refused.
OTHER="$SCRATCH/other"
cp -r "$DATA/models/mixtral-f32" "$OTHER"
sed -i 's/"rope_theta": 1000000.0/"rope_theta": 500000.0/' "$OTHER/config.json"
set +e
"${MPIRUN[@]}" -np 2 "$MOE" generate --model "$DATA/models/mixtral-f32" --prompt-ids "1 2" --max-tokens 1 : \
  -np 1 "$MOE" generate --model "$OTHER" --prompt-ids "1 2" --max-tokens 1 > /dev/null 2> "$SCRATCH/model.err"
rc=$?
set -e
[ $rc -ne 0 ] || fail "mixed models were accepted"
grep -q "the model (config.json and tensors) differs between rank 0 .* and rank 2" "$SCRATCH/model.err" || { cat "$SCRATCH/model.err"; fail "mixed models: no clear error"; }
echo "ok: ranks with different models are refused"

# Ranks with different binaries are refused.
cp "$MOE" "$SCRATCH/moe-other"
printf 'x' >> "$SCRATCH/moe-other"
set +e
"${MPIRUN[@]}" -np 2 "$MOE" generate --model "$DATA/models/mixtral-f32" --prompt-ids "1 2" --max-tokens 1 : \
  -np 1 "$SCRATCH/moe-other" generate --model "$DATA/models/mixtral-f32" --prompt-ids "1 2" --max-tokens 1 \
  > /dev/null 2> "$SCRATCH/binary.err"
rc=$?
set -e
[ $rc -ne 0 ] || fail "mixed binaries were accepted"
grep -q "the moe binary differs between rank 0 .* and rank 2" "$SCRATCH/binary.err" || { cat "$SCRATCH/binary.err"; fail "mixed binaries: no clear error"; }
echo "ok: ranks with different binaries are refused"
