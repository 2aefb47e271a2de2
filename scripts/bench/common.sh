# Shared by run.sh, gpu.sh and ranks_ratio.sh. The caller sets `rounds` and `np` to its
# defaults, then calls parse_rounds_and_np "$@": --rounds R and --np N are taken (up to an
# optional --), and the rest is left in the array bench_args. Also: mpirun may run as root, and $out is a scratch
# directory removed on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

parse_rounds_and_np() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --rounds) rounds=$2; shift 2 ;;
      --np) np=$2; shift 2 ;;
      --) shift; break ;;
      *) break ;;
    esac
  done
  bench_args=("$@")
}

# Runs `build/moe bench ARGS... --json` once, under mpirun when np > 1, into $out/bench.ROUND
# (its stderr in $out/err.ROUND); on failure prints that stderr and stops the script.
bench_once() {
  local round=$1
  shift
  local cmd=(build/moe bench)
  [ "$np" -gt 1 ] && cmd=(mpirun --oversubscribe -np "$np" build/moe bench)
  "${cmd[@]}" "$@" --json > "$out/bench.$round" 2> "$out/err.$round" ||
    { cat "$out/err.$round" >&2; exit 1; }
}
