#!/bin/sh
# Installs gitlab-ci-local (https://github.com/firecow/gitlab-ci-local), which runs the jobs of a
# .gitlab-ci.yml on this machine with its shell executor: the end-to-end test runs the CI template
# (ci/imgform.gitlab-ci.yml) with it (e2e/gitlabci_test.go). Pinned, installed with `npm install -g` into
# npm's global prefix (`npm prefix -g`: /usr for Debian's and NodeSource's packages, so
# /usr/bin/gitlab-ci-local), plus rsync (apt), with which gitlab-ci-local copies a job's files and
# artifacts. Each only when missing: a warm machine needs no network (0.4 s). Needs Node 20 or later and
# npm, which it does not install (Debian 12's nodejs is 18). Run as root (CI is); otherwise it prints what
# is missing and fails.
set -eu
# 4.73.0: the last release that runs on Node 20. 4.74.0 and later are one bundled file that calls
# Set.prototype.union (Node 22) and stop at start on Node 20 with "kW.union is not a function".
version=4.73.0

have=$(gitlab-ci-local --version 2>/dev/null || true)
need_rsync=
command -v rsync >/dev/null 2>&1 || need_rsync=1
if [ "$have" = "$version" ] && [ -z "$need_rsync" ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	[ "$have" = "$version" ] || echo "install-gitlab-ci-local: gitlab-ci-local $version is missing${have:+ (found $have)}: run as root, or npm install -g gitlab-ci-local@$version" >&2
	[ -z "$need_rsync" ] || echo "install-gitlab-ci-local: rsync is missing: run as root, or apt-get install rsync" >&2
	exit 1
fi
if [ -n "$need_rsync" ]; then
	echo "install-gitlab-ci-local: installing rsync" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends rsync >&2
fi
[ "$have" = "$version" ] && exit 0
if ! command -v npm >/dev/null 2>&1; then
	echo "install-gitlab-ci-local: npm is missing: install Node 20 or later with npm (Debian: apt-get install nodejs npm)" >&2
	exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
	echo "install-gitlab-ci-local: gitlab-ci-local $version needs Node 20 or later, this is $(node --version 2>/dev/null || echo none)" >&2
	exit 1
fi
echo "install-gitlab-ci-local: installing gitlab-ci-local $version${have:+ (replacing $have)}" >&2
npm install -g --no-fund --no-audit --loglevel=error "gitlab-ci-local@$version" >&2
have=$(gitlab-ci-local --version 2>/dev/null || true)
if [ "$have" != "$version" ]; then
	echo "install-gitlab-ci-local: after npm install -g, gitlab-ci-local --version says \"$have\", want $version: is $(npm prefix -g)/bin on PATH?" >&2
	exit 1
fi
