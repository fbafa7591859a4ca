#!/usr/bin/env bash
# Runs the whole test suite with `bun test` (extra arguments are passed through), keeps the
# output in a log, and ends with the one line CI reads: `N passed, N failed[, N skipped]`.
# bun test prints its own ` N pass` / ` N fail` summary lines instead, so the counts are
# taken from those. Exits non-zero when a test failed, when bun test failed for any other
# reason, or when no test ran at all.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1

# The pinned Bun from `make bun` first, so tests that spawn `bun` get the same version.
export PATH="$root/.tools/node_modules/.bin:$root/node_modules/.bin:$PATH"
bun=${BUN:-bun}
log=${TEST_LOG:-$root/tmp/test.log}
mkdir -p "$(dirname "$log")"

"$bun" test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# Last summary line of each kind wins, in case a test prints something that looks like one.
count() {
  sed 's/\x1b\[[0-9;]*m//g' "$log" | awk -v kind="$1" '$0 ~ "^ *[0-9]+ " kind "$" { n = $1 } END { print n + 0 }'
}
passed=$(count pass)
failed=$(count fail)
skipped=$(($(count skip) + $(count todo)))

echo
echo "test log: $log"
if [[ $passed -eq 0 && $failed -eq 0 ]]; then
  echo "no test ran (bun test exited with status $status)"
  status=1
elif [[ $status -ne 0 && $failed -eq 0 ]]; then
  echo "bun test exited with status $status though no test failed: counted as one failure"
  failed=1
fi

summary="$passed passed, $failed failed"
[[ $skipped -gt 0 ]] && summary+=", $skipped skipped"
echo "$summary"

[[ $status -eq 0 && $failed -eq 0 ]]
