# Shared by the GPU scripts: the mpi helpers, and the comparison of two `moe generate` runs
# (their --json and --dump-logits files): identical greedy tokens, logits within 2e-2 of the
# largest (cuBLAS picks its kernels by shape, so GPU runs are not bit-identical across batch
# layouts).
source "$(dirname "${BASH_SOURCE[0]}")/../mpi/common.sh"
unset CUDA_VISIBLE_DEVICES
# A python3 with numpy: Debian's (scripts/install-deps.sh installs python3-numpy), else the first
# on PATH.
PYTHON=/usr/bin/python3
"$PYTHON" -c "import numpy" 2> /dev/null || PYTHON=python3

compare_logits() {  # reference, candidate
  "$PYTHON" - "$1" "$2" <<'PY' || fail "$2 differs from $1"
import json, sys
import numpy as np
a, b = sys.argv[1], sys.argv[2]
ja, jb = json.load(open(a + ".json")), json.load(open(b + ".json"))
assert ja["generated_ids"] == jb["generated_ids"], (ja["generated_ids"], jb["generated_ids"])
for part in ("prompt", "gen"):
    x, y = np.load(f"{a}.{part}.npy"), np.load(f"{b}.{part}.npy")
    err = np.abs(x - y).max() / np.abs(x).max()
    assert err <= 2e-2, f"{part} logits differ by {err:.3g} of the largest"
PY
}
