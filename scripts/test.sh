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
  failed=$(cut -d: -f2 Testing/Temporary/LastTestsFailed.log 2> /dev/null | tr '\n' ' ')
  awk -v failed=" $failed" '
    /^[0-9]+\/[0-9]+ Testing: / { name = $3; n = 0; t = 0; want = index(failed, " " name " ") }
    !want { next }
    /^<end of output>/ { for (i = t > 6 ? t - 6 : 0; i < t; i++) print name ": " tail[i % 6]; next }
    { tail[t++ % 6] = substr($0, 1, 300) }
    /FAIL|Failure|exceeded|[Hh]ung|not found/ && n++ < 8 { print name ": " substr($0, 1, 300) }
  ' Testing/Temporary/LastTest.log
fi
exit $rc
