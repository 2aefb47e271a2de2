#!/usr/bin/env bash
# The bundled demo model (models/tiny-mixtral-shakespeare, made by scripts/train_tiny_mixtral.py):
#  1. `moe score` of its heldout.txt gives the same token count as transformers and a perplexity
#     within 0.5% of reference.json's transformers_perplexity (transformers 4.57, float32, same
#     bf16 weights, same BOS + sp.encode(text) sequence);
#  2. `moe generate` exits 0 and prints text past the prompt.
# Env: MOE = the moe binary (required), MODELS = the models/ directory (default: ../models).
# Needs only python3's standard library.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${MOE:?set MOE to the moe binary}"
MODELS=${MODELS:-$here/../models}
model=$MODELS/tiny-mixtral-shakespeare
threads=${MOE_TEST_THREADS:-0}

for f in config.json model.safetensors tokenizer.model heldout.txt reference.json; do
  [ -f "$model/$f" ] || { echo "FAIL: $model/$f is missing"; exit 1; }
done
[ -x "$MOE" ] || { echo "FAIL: MOE=$MOE is not an executable"; exit 1; }

passed=0
failed=0

# 1. Perplexity against transformers.
if score=$("$MOE" score --model "$model" --text-file "$model/heldout.txt" --json --threads "$threads");
then
  if python3 - "$model/reference.json" "$score" <<'EOF'
import json, sys
ref = json.load(open(sys.argv[1]))
lines = [l for l in sys.argv[2].splitlines() if l.strip().startswith("{")]
got = json.loads(lines[-1])
want_ppl, ppl = ref["transformers_perplexity"], got["perplexity"]
ratio = ppl / want_ppl
print(f"heldout.txt: moe {got['tokens']} tokens, perplexity {ppl:.4f} "
      f"(mean log-likelihood {got['mean_log_likelihood']:.6f})")
print(f"heldout.txt: transformers {ref['transformers_version']} {ref['tokens']} tokens, perplexity "
      f"{want_ppl:.4f} (mean log-likelihood {ref['transformers_mean_log_likelihood']:.6f})")
print(f"ratio moe/transformers = {ratio:.6f} (allowed 0.995 .. 1.005)")
ok = True
if got["tokens"] != ref["tokens"]:
    print(f"FAIL: token count {got['tokens']} != reference {ref['tokens']} (tokenizer mismatch)")
    ok = False
if not abs(ratio - 1.0) <= 0.005:
    print("FAIL: perplexity differs from transformers by more than 0.5%")
    ok = False
sys.exit(0 if ok else 1)
EOF
  then
    echo "PASS: score matches transformers"
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
else
  echo "FAIL: moe score exited non-zero"
  failed=$((failed + 1))
fi

# 2. Generation prints text.
prompt="To be, or not to be,"
if gen=$("$MOE" generate --model "$model" --prompt "$prompt" --max-tokens 20 --threads "$threads");
then
  echo "generate: $gen"
  rest=${gen#"$prompt"}
  if [ "${#gen}" -gt "${#prompt}" ] && printf '%s' "$rest" | grep -q '[A-Za-z]'; then
    echo "PASS: generate printed text"
    passed=$((passed + 1))
  else
    echo "FAIL: generate printed no text past the prompt"
    failed=$((failed + 1))
  fi
else
  echo "FAIL: moe generate exited non-zero"
  failed=$((failed + 1))
fi

echo "demo_model_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
