#!/bin/sh
# Runs one fuzz target: fuzz-one.sh GO PKG TARGET FUZZTIME. A failure counts only when go test found an
# input that fails (it writes it under PKG/testdata/fuzz/TARGET/) or the test itself failed. Go's fuzzer
# also reports "context deadline exceeded" as a failure when -fuzztime ends while it is still minimizing a
# new interesting input (seen in CI with 3 s targets, 2026-11-30): that is the clock, not a finding.
set -u
go=$1 pkg=$2 target=$3 fuzztime=$4
corpus="$pkg/testdata/fuzz/$target"
before=$(find "$corpus" -type f 2>/dev/null | sort)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$go" test -vet=off -run '^$' -fuzz "^$target\$" -fuzztime "$fuzztime" -fuzzminimizetime 5s "$pkg" >"$out" 2>&1
status=$?
cat "$out"
[ "$status" = 0 ] && exit 0
after=$(find "$corpus" -type f 2>/dev/null | sort)
if [ "$before" = "$after" ] && grep -q 'context deadline exceeded' "$out" && ! grep -q -- '--- FAIL: .*/' "$out" &&
	! grep -q 'Failing input written to' "$out"; then
	echo "fuzz-one: $target: the fuzz time ended during minimization (no failing input): not a failure"
	exit 0
fi
exit "$status"
