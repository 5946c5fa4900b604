#!/bin/sh
# Installs the Debian packages imgform's tests and builds need, only those that are missing, so a warm
# machine needs no network. Run as root (CI is); otherwise it prints what is missing and fails.
set -eu
# qemu-system-x86/qemu-utils: the build VM and qemu-img; ovmf: firmware = "uefi"; genisoimage: isoinfo reads
# the seed back in tests; zstd: the benchmarks compare against the zstd command line; e2fsprogs (mkfs.ext4,
# debugfs), fdisk (sfdisk) and systemd (journalctl): the cleanup test and the drills look inside file systems;
# systemd (systemctl --root) and python3-yaml: the cleanup's network handoff runs on a file tree in tests.
# file: make lint refuses tracked binaries. passt: the guest's network without a way to the host's loopback
# (machine.host_loopback). docker-registry: the remote cache's tests run a real registry on loopback.
# openssh-client: the end-to-end test logs in to a VM kept by apply -on-error=keep as a user would.
# xfsprogs: the fetch test clones a local source on an XFS file system (reflinks). pre-commit and git: the
# hooks of .pre-commit-hooks.yaml are tested in a consumer repository with Debian's pre-commit. fish: the
# fish completion script is loaded by fish in a test. graphviz: imgform graph's DOT is rendered by dot in a test.
pkgs="qemu-system-x86 qemu-utils ovmf genisoimage zstd e2fsprogs fdisk systemd python3-yaml file passt docker-registry openssh-client xfsprogs pre-commit git fish graphviz"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# gitlab-ci-local (npm) runs the GitLab CI template's jobs in the end-to-end test.
"$(dirname "$0")/install-gitlab-ci-local.sh"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing packages:$missing (run as root or install them)" >&2
	exit 1
fi
echo "install-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $missing >&2
