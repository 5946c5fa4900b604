#!/bin/sh
# Tests scripts/lint-files.sh in a throwaway git repository: one index per case, nothing is committed.
# Run by `make lint` (about 1 s with a warm Go build cache); prints one line per failed case, exits 1 then.
set -eu
lint=$(cd "$(dirname "$0")" && pwd)/lint-files.sh
# Inside a git hook these point at the real repository; the cases below must never touch it.
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_PREFIX

tmp=$(mktemp -d "${TMPDIR:-/tmp}/imgform-lint-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
repo=$tmp/repo
mkdir -p "$repo/internal/foo/testdata" "$repo/docs" "$repo/cmd/hello" "$tmp/src"
git -C "$repo" init -q

# Fixtures: 1.1 MB, exactly 1 MiB (the limit is "over 1 MiB"), a small text file, a built Go binary.
head -c 1153434 /dev/zero >"$tmp/big"
head -c 1048576 /dev/zero >"$tmp/limit"
echo 'package foo' >"$repo/internal/foo/foo.go"
printf 'package main\n\nfunc main() {}\n' >"$tmp/src/main.go"
(cd "$tmp/src" && GOFLAGS='' GOWORK=off go build -o "$tmp/hello" main.go)

failed=0
# check NAME WANT(pass|fail) GREP PATH...: puts the given paths (and the source file) in a fresh index and
# runs the lint; a failure's output must contain GREP, a pass's must be empty.
check() {
	name=$1 want=$2 grep=$3
	shift 3
	git -C "$repo" read-tree --empty
	git -C "$repo" add -- internal/foo/foo.go "$@"
	if out=$(cd "$repo" && "$lint" 2>&1); then got=pass; else got=fail; fi
	if [ "$got" != "$want" ]; then
		echo "lint-test: $name: lint should $want, it did $got: $out" >&2
		failed=1
	elif [ "$want" = fail ] && ! printf '%s\n' "$out" | grep -q -- "$grep"; then
		echo "lint-test: $name: the message lacks \"$grep\": $out" >&2
		failed=1
	elif [ "$want" = pass ] && [ -n "$out" ]; then
		echo "lint-test: $name: lint passed but printed: $out" >&2
		failed=1
	fi
	# Only the index counts, but leave the working tree as clean as the next case expects.
	for p in "$@"; do rm -f "$repo/$p"; done
}

cp "$tmp/big" "$repo/docs/big.bin"
check "1.1 MB outside testdata" fail "docs/big.bin (1.1 MB)" docs/big.bin
cp "$tmp/big" "$repo/internal/foo/testdata/big.bin"
check "1.1 MB under testdata" pass "" internal/foo/testdata/big.bin
cp "$tmp/big" "$repo/testdata-old.bin"
check "1.1 MB in a name that only starts with testdata" fail "testdata-old.bin" testdata-old.bin
cp "$tmp/limit" "$repo/docs/limit.bin"
check "exactly 1 MiB outside testdata" pass "" docs/limit.bin
cp "$tmp/big" "$repo/docs/with space.bin"
check "1.1 MB, space in the name" fail "docs/with space.bin" "docs/with space.bin"
cp "$tmp/hello" "$repo/cmd/hello/hello"
check "Go binary" fail "executables are tracked" cmd/hello/hello
cp "$tmp/hello" "$repo/internal/foo/testdata/hello"
check "Go binary under testdata" fail "internal/foo/testdata/hello" internal/foo/testdata/hello
check "sources only" pass ""

[ "$failed" = 0 ] || exit 1
echo "lint-test: ok (8 cases)"
