#!/usr/bin/env bash
# The main job on the bundled default model (models/tiny-mixtral-shakespeare, a small Mixtral
# trained on Shakespeare by scripts/train_tiny_mixtral.py): build, then serve it with a
# coordinator and two expert workers and ask it through the gRPC client; also the one-process
# CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh

model=models/tiny-mixtral-shakespeare
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

echo "== moe inspect =="
build/moe inspect --model "$model" --workers 2 | tail -n 8

echo "== moe generate (one process, greedy) =="
build/moe generate --model "$model" --prompt "To be, or not to be," --max-tokens 40

echo "== moe serve: a coordinator and two expert workers, asked over gRPC =="
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mpirun --oversubscribe -np 3 build/moe serve --model "$model" --listen "127.0.0.1:$port" \
  > build/demo-serve.log 2>&1 &
server=$!
trap 'kill "$server" 2> /dev/null || true' EXIT
client=(/usr/bin/python3 scripts/client.py --address "127.0.0.1:$port")
for _ in $(seq 100); do
  [ "$("${client[@]}" health 2> /dev/null)" = SERVING ] && break
  sleep 0.2
done
"${client[@]}" generate "My lord, I" --max-tokens 40 --temperature 0.8 --top-p 0.9 --seed 7
"${client[@]}" generate "Once upon a time" --max-tokens 24 --json
# A clean stop: SIGTERM to rank 0 (found by the rank Open MPI gave it, among mpirun's children),
# which drains and stops the workers.
rank0=""
for pid in $(pgrep -P "$server"); do
  grep -qxz OMPI_COMM_WORLD_RANK=0 "/proc/$pid/environ" 2> /dev/null && rank0=$pid
done
[ -n "$rank0" ] || { echo "demo: rank 0 of the server not found; see build/demo-serve.log" >&2; exit 1; }
kill -TERM "$rank0"
wait "$server" || true
trap - EXIT

echo "== moe score (held-out Hamlet; transformers gives the same perplexity) =="
build/moe score --model "$model" --text-file "$model/heldout.txt" --json
