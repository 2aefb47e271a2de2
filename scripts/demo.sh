#!/usr/bin/env bash
# The main job on a bundled default model: build, then generate text.
# Until the trained demo model lands, the model is a small random Mixtral made here.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh

model=build/demo-model
if [ ! -f "$model/config.json" ]; then
  python3 scripts/make_random_checkpoint.py --out "$model" --tokenizer tests/data/tokenizer.model
fi
echo "== moe inspect =="
build/moe inspect --model "$model" | tail -n 4
echo "== moe generate (greedy) =="
build/moe generate --model "$model" --prompt "The quick brown fox" --max-tokens 24 --ignore-eos
echo "== moe generate --json (sampled, seed 7) =="
build/moe generate --model "$model" --prompt "Once upon a time" --max-tokens 16 \
  --temperature 0.8 --top-p 0.9 --seed 7 --json
