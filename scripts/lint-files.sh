#!/bin/sh
# Refuses build outputs in git (a 69 MB binary was committed once, issue 11). Checks every tracked file of
# the repository that holds the current folder:
#   - size: no file over 1 MiB (1048576 bytes) outside a testdata/ folder. Fixtures under any testdata/ may
#     be larger (a golden file or a console log), anything else that big is almost always an output.
#   - executables: no file that file(1) calls an executable, a shared library, a Mach-O or a Windows binary,
#     testdata/ included (a test that needs one builds it in t.TempDir(), as the qemu package assembles
#     testdata/kvmprobe.S). None is tracked today, so there is no allow-list.
# Sizes and contents are those of the working tree. Run by `make lint`; scripts/lint-test.sh tests it.
set -eu
cd "$(git rev-parse --show-toplevel)"
limit=1048576
status=0

big=$(git ls-files -z | xargs -0 -r stat -c '%s %n' 2>/dev/null |
	awk -v limit="$limit" '
		{ size = $1; name = substr($0, index($0, " ") + 1) }
		size > limit && name !~ /(^|\/)testdata\// { printf "  %s (%.1f MB)\n", name, size / 1048576 }')
if [ -n "$big" ]; then
	cat >&2 <<EOF
lint: tracked files over 1 MB outside a testdata/ folder:
$big
  Build outputs and downloads do not belong in git: untrack each with \`git rm --cached PATH\` and add its
  path to .gitignore. A test fixture goes under the testdata/ folder of the package that reads it.
EOF
	status=1
fi

bins=$(git ls-files -z | xargs -0 -r file -N -0 --mime-type 2>/dev/null |
	tr '\0' '\t' |
	awk -F '\t' '$2 ~ /application\/(x-executable|x-pie-executable|x-sharedlib|x-mach-binary|x-dosexec)/ { print "  " $1 }')
if [ -n "$bins" ]; then
	cat >&2 <<EOF
lint: executables are tracked (build outputs?):
$bins
  Untrack each with \`git rm --cached PATH\` and ignore it in .gitignore (make build writes bin/imgform).
  A test that needs an executable builds it at run time in t.TempDir().
EOF
	status=1
fi
exit $status
