# Shared setup for the MPI tests: paths, mpirun flags for root and oversubscription, a scratch
# directory removed on exit, and small assertion helpers.
set -euo pipefail
MOE=${MOE:?path to the moe binary}
DATA=${DATA:?path to tests/data}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# These tests hold the CPU path to its promises: `--device auto` must not find a GPU here
# (tests/gpu/ covers the GPU path).
export CUDA_VISIBLE_DEVICES=
MPIRUN=(mpirun --oversubscribe --mca btl self,vader,tcp)
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
same_bytes() { cmp -s "$1" "$2" || fail "$1 and $2 differ"; }
