#!/usr/bin/env bash
# Hand placement and replicas give the same bits; bad placement files are refused clearly;
# `moe inspect --workers` prints the placement; expert statistics conserve tokens.
source "$(dirname "$0")/common.sh"
M="$DATA/models/mixtral-f32"
PROMPT="1 5 9 200 3 17 44 80 81 82 83 84 99 7"
"$MOE" generate --model "$M" --prompt-ids "$PROMPT" --max-tokens 8 --dump-logits "$SCRATCH/one" --json > "$SCRATCH/one.json"

# Experts 0 and 3 replicated on all three workers, the rest pinned.
cat > "$SCRATCH/placement.json" <<'JSON'
{"experts": {"0": [1, 2, 3], "1": [1], "2": [2], "3": [3, 1, 2], "4": [3], "5": [1], "6": [2], "7": [3]}}
JSON
"${MPIRUN[@]}" -np 4 "$MOE" generate --model "$M" --prompt-ids "$PROMPT" --max-tokens 8 \
  --placement "$SCRATCH/placement.json" --dump-logits "$SCRATCH/placed" --json > "$SCRATCH/placed.json"
same_bytes "$SCRATCH/one.prompt.npy" "$SCRATCH/placed.prompt.npy"
same_bytes "$SCRATCH/one.gen.npy" "$SCRATCH/placed.gen.npy"
echo "ok: hand placement with replicas is bit-identical"

# Every expert split across two workers (each holds half of every expert's ffn blocks).
"${MPIRUN[@]}" -np 3 "$MOE" generate --model "$M" --prompt-ids "$PROMPT" --max-tokens 8 \
  --placement "$(dirname "$0")/../../deploy/placements/split.json" --dump-logits "$SCRATCH/split" > /dev/null
same_bytes "$SCRATCH/one.prompt.npy" "$SCRATCH/split.prompt.npy"
same_bytes "$SCRATCH/one.gen.npy" "$SCRATCH/split.gen.npy"
"$MOE" inspect --model "$M" --workers 2 --placement "$(dirname "$0")/../../deploy/placements/split.json" \
  > "$SCRATCH/split.txt"
grep -q "rank 2: e0\[[0-9]*:[0-9]*\] e1\[" "$SCRATCH/split.txt" || { cat "$SCRATCH/split.txt"; fail "inspect does not show the split"; }
echo "ok: experts split across workers are bit-identical"

# Statistics: every layer routes (tokens processed) x top-2 expert slots; replicas share rows.
python3 - "$SCRATCH/placed.json" <<'PY'
import json, sys
out = json.load(open(sys.argv[1]))
s = out["stats"]
tokens = len(out["prompt_ids"]) + len(out["generated_ids"]) - 1  # the last token is never fed
for layer, counts in enumerate(s["expert_tokens"]):
    assert sum(counts) == 2 * tokens, (layer, counts, tokens)
    assert all(c > 0 for c in counts), ("an expert got no tokens", layer, counts)
rows = s["rank_rows"]
assert rows[0] == 0 and all(r > 0 for r in rows[1:]), rows
print("ok: expert statistics conserve tokens:", s["expert_tokens"][0], "rows per rank", rows)
PY

# Bad placement files: a clear error naming the file and the fault, exit status 2.
check_bad() {
  echo "$1" > "$SCRATCH/bad.json"
  set +e
  "${MPIRUN[@]}" -np 3 "$MOE" generate --model "$M" --prompt-ids "1 2" --max-tokens 1 \
    --placement "$SCRATCH/bad.json" > /dev/null 2> "$SCRATCH/bad.err"
  rc=$?
  set -e
  [ $rc -ne 0 ] || fail "placement '$1' was accepted"
  grep -q "$2" "$SCRATCH/bad.err" || { cat "$SCRATCH/bad.err"; fail "no '$2' in the error for '$1'"; }
  grep -q "bad.json" "$SCRATCH/bad.err" || fail "the error does not name the file"
}
check_bad '{"experts": {"0": [1]}}' "expert 1 has no rank"
check_bad '{"experts": {"0": [5], "1": [1], "2": [1], "3": [1], "4": [2], "5": [2], "6": [2], "7": [2]}}' "rank 5 is not a worker rank"
check_bad '{"experts": {"9": [1]}}' "expert '9' is not an expert id"
check_bad 'not json' "expected a JSON object"
check_bad '{"split": false}' '"split" must be true'
check_bad '{"experts": {"0": [1], "00": [1], "1": [1], "2": [1], "3": [2], "4": [2], "5": [2], "6": [2], "7": [2]}}' "expert '00' is not an expert id"
check_bad '{"experts": {"0": [4294967297], "1": [1], "2": [1], "3": [1], "4": [2], "5": [2], "6": [2], "7": [2]}}' "is not a worker rank"
check_bad '{"experts": {"0": [1], "1": [1], "2": [1], "3": [1], "4": [2], "5": [2], "6": [2], "7": [2], "0": [2]}}' 'key "0" is given twice'
echo "ok: bad placement files are refused"

# Ranks that read different placement files: refused at start, before any step (each worker
# would otherwise be sent experts it does not hold).
echo '{"experts": {"0": [1], "1": [1], "2": [1], "3": [1], "4": [2], "5": [2], "6": [2], "7": [2]}}' \
  > "$SCRATCH/p0.json"
echo '{"experts": {"0": [2], "1": [2], "2": [2], "3": [2], "4": [1], "5": [1], "6": [1], "7": [1]}}' \
  > "$SCRATCH/p1.json"
set +e
"${MPIRUN[@]}" -np 3 sh -c 'exec "$0" generate --model "$1" --prompt-ids "1 2" --max-tokens 1 \
  --rank-timeout 20 --placement "$2/p$((OMPI_COMM_WORLD_RANK > 0)).json"' "$MOE" "$M" "$SCRATCH" \
  > /dev/null 2> "$SCRATCH/mixed.err"
rc=$?
set -e
[ $rc -ne 0 ] || fail "ranks with different placements were accepted"
grep -q "the expert placement (--placement) differs between rank 0" "$SCRATCH/mixed.err" \
  || { cat "$SCRATCH/mixed.err"; fail "no placement mismatch named"; }
echo "ok: ranks with different placements are refused"

"$MOE" inspect --model "$M" --workers 9 > "$SCRATCH/inspect.txt"
grep -q "rank 9:" "$SCRATCH/inspect.txt" || fail "inspect --workers 9 lists no rank 9"
grep -q "e0\[0:7\]" "$SCRATCH/inspect.txt" || fail "inspect --workers 9 does not slice expert 0"
echo "ok: inspect prints the placement"
