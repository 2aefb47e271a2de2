#!/usr/bin/env bash
# The test command: installs what is needed, builds, and runs every test through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh -DMOE_WERROR=ON
cd build
rc=0
ctest --output-on-failure -j "$(nproc 2>/dev/null || echo 2)" --timeout 600 "$@" || rc=$?
if [ $rc -ne 0 ]; then
  # A digest last, where a log's tail shows it: each failed test's FAIL lines and its last
  # lines (its whole output is above, and in build/Testing/Temporary/LastTest.log).
  echo "== failed tests: their FAIL lines, then their last lines =="
  failed=$(cut -d: -f2 Testing/Temporary/LastTestsFailed.log 2> /dev/null | tr '\n' ' ') || true
  awk -v failed=" $failed" '
    /^[0-9]+\/[0-9]+ Testing: / { name = $3; nf = 0; t = 0; want = index(failed, " " name " ") }
    !want { next }
    /^<end of output>/ {
      for (i = 0; i < nf; i++) { print name ": " fails[i]; shown[fails[i]] = 1 }
      for (i = t > 6 ? t - 6 : 0; i < t; i++) if (!(tail[i % 6] in shown)) print name ": " tail[i % 6]
      delete shown; want = 0; next
    }
    { line = substr($0, 1, 300); tail[t++ % 6] = line }
    /FAIL|Failure|exceeded|[Hh]ung|not found/ && nf < 8 { fails[nf++] = line }
  ' Testing/Temporary/LastTest.log || true
fi
exit $rc
