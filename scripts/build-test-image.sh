#!/usr/bin/env bash
# build-test-image.sh: build a Debian 12 (bookworm) cloud-style source image from Debian packages.
#
# It stands in for the official debian-12-genericcloud-amd64.qcow2 (which cannot be downloaded on the
# test machines) in imgform's end-to-end tests and demo: MBR disk with one ext4 root partition, GRUB in
# BIOS mode on the serial console, Debian's cloud kernel, cloud-init (NoCloud through a disk labelled
# "cidata"), openssh-server without host keys, no root password, empty machine-id.
#
# Two variants, for the two network stacks that real Debian sources use:
#   ifupdown  (default) like a Debian server install: ifupdown + isc-dhcp-client manage the NIC, cloud-init
#             renders ENI (/etc/network/interfaces.d/50-cloud-init); systemd-networkd is installed (it is
#             part of systemd) but disabled, with systemd-networkd-wait-online; systemd-resolved is
#             enabled and gets the DHCP DNS servers from a dhclient hook.
#   netplan   like the official genericcloud image: netplan.io instead of ifupdown (isc-dhcp-client is
#             still there, as on the official image: cloud-init depends on it, but nothing runs it on
#             boot), cloud-init renders netplan (/etc/netplan/50-cloud-init.yaml), systemd-networkd (with
#             wait-online) and systemd-resolved enabled; networkd hands the DHCP DNS servers to resolved.
#
# Usage: sudo scripts/build-test-image.sh [ifupdown|netplan]   (root, Debian 12, needs deb.debian.org on a
#                                                                cold run)
#   The variant is the first argument, else $IMGFORM_TEST_IMAGE_VARIANT, else ifupdown; any other is an error.
#   stdout: only the path of the image, so callers can do  img=$(scripts/build-test-image.sh netplan)
#   stderr: progress
#
# The result is cached at
#   ${IMGFORM_TEST_IMAGE_DIR:-/var/cache/imgform/test-images}/debian-12-cloud-<variant>-<16 hex of sha256(this script)>.qcow2
# with <image>.SHA256SUMS beside it. If that file exists the script prints its path and exits at once; any
# edit of this script changes the names of both variants and so rebuilds them. The build runs in a
# temporary folder in the same directory and the image is renamed into place only when complete. Builds
# of either variant in one cache folder run one at a time and share its .debs download cache.
#
# Facts this script relies on (see the project's field notes): the host kernel has no partition-table
# support for loop devices (no loopNp1), so partitions are reached with losetup --offset/--sizelimit;
# grub-install cannot work there, so GRUB is set up with grub-mkimage + grub-bios-setup through a device
# map, and GRUB_DEVICE="UUID=..." is needed for 10_linux to write a kernel entry; systemd-resolved breaks
# DNS in the chroot, so it is installed last.

set -euo pipefail
shopt -s nullglob

# Everything but the final path goes to stderr: keep the real stdout as fd 3.
exec 3>&1 1>&2

readonly SUITE=bookworm
readonly MIRROR=http://deb.debian.org/debian
readonly SECURITY_MIRROR=http://deb.debian.org/debian-security
readonly DISK_SIZE=2G          # virtual size, like the official genericcloud image
readonly PART_START=2048       # sectors: 1 MiB gap after the MBR for GRUB's core.img

readonly VARIANTS=(ifupdown netplan)

# Packages installed with apt inside the chroot (no recommends), then those of the variant's network stack
# (NET_PACKAGES, below). systemd-resolved comes later, on its own.
readonly PACKAGES=(
  systemd-sysv dbus libpam-systemd udev kmod
  linux-image-cloud-amd64 initramfs-tools zstd grub-pc
  iproute2 netbase iputils-ping
  openssh-server sudo qemu-guest-agent
  cloud-init cloud-guest-utils cloud-initramfs-growroot fdisk
  ca-certificates curl locales procps less apt-utils
)

log() { printf '[build-test-image %4ds] %s\n' "$SECONDS" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

(($# <= 1)) || die "usage: $0 [ifupdown|netplan]"
variant=${1:-${IMGFORM_TEST_IMAGE_VARIANT:-ifupdown}}
case $variant in
  ifupdown) NET_PACKAGES=(ifupdown isc-dhcp-client) ;;
  netplan) NET_PACKAGES=(netplan.io) ;; # isc-dhcp-client comes anyway: cloud-init depends on it
  *) die "unknown variant '$variant' (argument or IMGFORM_TEST_IMAGE_VARIANT): want one of ${VARIANTS[*]}" ;;
esac
readonly variant NET_PACKAGES

[[ $(id -u) -eq 0 ]] || die "must run as root"

script_path=$(readlink -f "${BASH_SOURCE[0]}")
script_hash=$(sha256sum "$script_path" | cut -c1-16)
out_dir=$(realpath -m -- "${IMGFORM_TEST_IMAGE_DIR:-/var/cache/imgform/test-images}")
image_name=debian-12-cloud-${variant}-${script_hash}.qcow2
image=$out_dir/$image_name

if [[ -f $image ]]; then
  printf '%s\n' "$image" >&3
  exit 0
fi

# ---------------------------------------------------------------------------------------------------------
# Cleanup: everything that is mounted or attached is recorded here and undone on any exit.
mounts=()     # mount points, undone in reverse order
loops=()      # loop devices
work=""       # temporary build folder
child=""      # process group of the long command that is running, if any (see run)

cleanup() {
  local rc=$? i
  trap - EXIT INT TERM HUP
  set +e
  if [[ -n $child ]]; then # stop debootstrap/apt/dpkg first: they hold the mounts
    kill -TERM -- "-$child" 2>/dev/null
    for _ in {1..20}; do
      kill -0 -- "-$child" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL -- "-$child" 2>/dev/null
    wait "$child" 2>/dev/null
  fi
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    if mountpoint -q "${mounts[i]}"; then
      umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" || log "could not unmount ${mounts[i]}"
    fi
  done
  for i in "${loops[@]}"; do
    losetup -d "$i" 2>/dev/null || log "could not detach $i"
  done
  if [[ -n $work && -d $work ]]; then
    if grep -qF " $work/" /proc/self/mounts; then
      log "leaving $work in place: something is still mounted under it"
    else
      rm -rf --one-file-system "$work"
    fi
  fi
  if ((rc != 0)); then
    log "build failed (exit $rc)"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM HUP

# run CMD...: run a long command in its own process group and wait for it. Bash runs a trap only once the
# foreground command has ended, so a SIGTERM sent to this script alone would wait for all of apt; with
# `wait` the trap runs at once and cleanup stops the whole group. (Its stdin is /dev/null.)
run() {
  local rc=0
  setsid "$@" &
  child=$!
  wait "$child" || rc=$?
  child=""
  return "$rc"
}

do_mount() { # do_mount TARGET MOUNT-ARGS...
  local target=$1
  shift
  mkdir -p "$target"
  mount "$@" "$target"
  mounts+=("$target")
}

do_umount() { # do_umount TARGET: unmount one recorded mount point now
  local target=$1 i
  umount "$target"
  for i in "${!mounts[@]}"; do
    [[ ${mounts[i]} == "$target" ]] && unset 'mounts[i]'
  done
  mounts=("${mounts[@]}")
}

# ---------------------------------------------------------------------------------------------------------
# Host tools: install only what is missing, so a warm run needs no network.
ensure_host_tools() {
  local -a missing=()
  local pair cmd pkg
  for pair in debootstrap:debootstrap qemu-img:qemu-utils qemu-system-x86_64:qemu-system-x86 \
    sfdisk:fdisk partx:util-linux losetup:mount mkfs.ext4:e2fsprogs e2fsck:e2fsprogs \
    fstrim:util-linux flock:util-linux blkid:util-linux mountpoint:util-linux; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  dpkg -s debian-archive-keyring >/dev/null 2>&1 || missing+=(debian-archive-keyring)
  if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    log "installing host packages: ${missing[*]}"
    run apt-get update -q
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}
ensure_host_tools

# ---------------------------------------------------------------------------------------------------------
# One build at a time per cache folder; the one that waited finds the image ready.
mkdir -p "$out_dir"
exec 9>"$out_dir/.build.lock"
if ! flock -n 9; then
  log "waiting for another build in $out_dir"
  flock 9
fi
if [[ -f $image ]]; then
  printf '%s\n' "$image" >&3
  exit 0
fi

# Leftovers of killed builds (the lock says none is running now).
for stale in "$out_dir"/.build.*/; do
  stale=${stale%/}
  if grep -qF " $stale/" /proc/self/mounts; then
    log "stale build folder $stale still has mounts: leaving it"
  else
    log "removing stale build folder $stale"
    rm -rf --one-file-system "$stale"
  fi
done

work=$(mktemp -d "$out_dir/.build.XXXXXX")
# Downloaded .deb files are kept between builds (those of the last image of each variant, see the cleanup),
# so that a rebuild after an edit of this script downloads little. The build lock guards this folder too.
debs=$out_dir/.debs
mkdir -p "$debs/partial"
raw=$work/disk.raw
root=$work/root
log "building $image (variant $variant, work in $work)"

# ---------------------------------------------------------------------------------------------------------
# Disk: MBR, one bootable Linux partition from 1 MiB to the end, ext4.
truncate -s "$DISK_SIZE" "$raw"
printf 'label: dos\nunit: sectors\nstart=%d, type=83, bootable\n' "$PART_START" | sfdisk -q "$raw"
read -r part_start part_sectors < <(partx -g -o START,SECTORS --nr 1 "$raw")
[[ $part_start == "$PART_START" && $part_sectors -gt 0 ]] || die "unexpected partition table: $part_start $part_sectors"

disk_loop=$(losetup --find --show "$raw")
loops+=("$disk_loop")
part_loop=$(losetup --find --show --offset $((part_start * 512)) --sizelimit $((part_sectors * 512)) "$raw")
loops+=("$part_loop")
log "disk $disk_loop, root partition $part_loop (offset $((part_start * 512)), $((part_sectors * 512)) bytes)"

mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 "$part_loop"
root_uuid=$(blkid -p -s UUID -o value "$part_loop")
[[ -n $root_uuid ]] || die "no UUID on $part_loop"
do_mount "$root" "$part_loop"

# ---------------------------------------------------------------------------------------------------------
log "debootstrap $SUITE (minbase)"
run debootstrap --variant=minbase --arch=amd64 --components=main --cache-dir="$debs" \
  --keyring=/usr/share/keyrings/debian-archive-keyring.gpg "$SUITE" "$root" "$MIRROR" >&2

do_mount "$root/proc" -t proc proc
do_mount "$root/sys" -t sysfs sysfs
do_mount "$root/dev" --bind /dev
do_mount "$root/dev/pts" --bind /dev/pts
do_mount "$root/run" -t tmpfs -o mode=0755 tmpfs
do_mount "$root/var/cache/apt/archives" --bind "$debs"

# Prefix that runs a command inside the image, with a clean environment.
in_root=(chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
  DEBIAN_FRONTEND=noninteractive)

# No service starts in the chroot; dpkg need not fsync every file of a throwaway build.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/zz-build-unsafe-io"

# apt sources as on the official image, all on deb.debian.org.
cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF

# Files that must be in place before the packages are configured.
cat >"$root/etc/fstab" <<EOF
# <file system> <mount point> <type> <options> <dump> <pass>
UUID=$root_uuid / ext4 rw,discard,errors=remount-ro,x-systemd.growfs 0 1
EOF
echo localhost >"$root/etc/hostname"
cat >"$root/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF

mkdir -p "$root/etc/default/grub.d"
cat >"$root/etc/default/grub.d/15_cloud.cfg" <<'EOF'
# Cloud image: serial console, short timeout.
GRUB_TIMEOUT=1
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200 earlyprintk=ttyS0,115200 consoleblank=0"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
GRUB_DISABLE_OS_PROBER=true
EOF
# Only for this build: 10_linux skips file-backed loop devices unless GRUB_DEVICE is given. Removed below,
# so that update-grub inside a guest probes its real disk.
echo "GRUB_DEVICE=\"UUID=$root_uuid\"" >"$root/etc/default/grub.d/99_build_device.cfg"

"${in_root[@]}" debconf-set-selections <<'EOF'
grub-pc grub-pc/install_devices multiselect
grub-pc grub-pc/install_devices_empty boolean true
grub-pc grub-pc/timeout string 1
locales locales/locales_to_be_generated multiselect en_US.UTF-8 UTF-8
locales locales/default_environment_locale select C.UTF-8
EOF

# ---------------------------------------------------------------------------------------------------------
log "apt: upgrade and install ${#PACKAGES[@]} + ${#NET_PACKAGES[@]} packages (${NET_PACKAGES[*]})"
apt_opts=(-y -q -o Dpkg::Use-Pty=0 -o APT::Install-Recommends=false -o Dpkg::Options::=--force-confdef
  -o Dpkg::Options::=--force-confold)
run "${in_root[@]}" apt-get update -q
run "${in_root[@]}" apt-get "${apt_opts[@]}" dist-upgrade
run "${in_root[@]}" apt-get "${apt_opts[@]}" install "${PACKAGES[@]}" "${NET_PACKAGES[@]}"
# Last: it turns /etc/resolv.conf into a symlink to resolved's stub, and DNS in the chroot is gone.
run "${in_root[@]}" apt-get "${apt_opts[@]}" install systemd-resolved

# unit_state UNIT EXPECTED: fail the build unless systemctl is-enabled says EXPECTED.
unit_state() {
  local state
  state=$("${in_root[@]}" systemctl is-enabled "$1" 2>/dev/null) || :
  [[ $state == "$2" ]] || die "$1 is '$state' in the image, want '$2'"
}

case $variant in
  netplan)
    # As on the official image: networkd manages the NIC (netplan's networkd backend) and feeds resolved the
    # DHCP DNS servers. Enabling networkd also enables systemd-networkd-wait-online (Also=), as there; with
    # networkd managing the NIC it is done as soon as DHCP is, so it does not hold up cloud-init.service.
    # cloud-init needs no renderer setting: Debian's cloud.cfg names none, so it takes the first available of
    # its default order (eni, sysconfig, netplan, ...), and without ifupdown that is netplan.
    "${in_root[@]}" systemctl enable systemd-networkd.service systemd-resolved.service
    unit_state systemd-networkd.service enabled
    unit_state systemd-networkd-wait-online.service enabled
    ;;
  ifupdown)
    # As on a Debian server install: ifupdown manages the NIC (cloud-init writes an ENI file) and networkd is
    # left disabled, and with it systemd-networkd-wait-online, which would wait 2 minutes for a link that
    # networkd manages and hold up cloud-init.service (ordered after it) and thus SSH.
    "${in_root[@]}" systemctl disable systemd-networkd.service systemd-networkd-wait-online.service
    "${in_root[@]}" systemctl enable systemd-resolved.service
    unit_state systemd-networkd.service disabled
    unit_state systemd-networkd-wait-online.service disabled
    ;;
esac
unit_state systemd-resolved.service enabled

# ifupdown's dhclient knows nothing about resolved: it writes into resolved's stub file, which resolved
# overwrites, so the guest has no DNS server. Hand the servers to resolved instead (as Ubuntu's hook does).
# This runs before D-Bus is up (networking.service comes before sysinit.target is reached), so it writes a
# resolved.conf drop-in and restarts resolved rather than calling resolvectl.
if [[ $variant == ifupdown ]]; then
  cat >"$root/etc/dhcp/dhclient-enter-hooks.d/resolved" <<'HOOK'
# Sourced by dhclient-script: pass the DHCP DNS servers and domains to systemd-resolved.
if [ -x /lib/systemd/systemd-resolved ] && [ -L /etc/resolv.conf ] &&
  systemctl is-enabled --quiet systemd-resolved.service 2>/dev/null; then
  _resolved_conf=/run/systemd/resolved.conf.d/isc-dhcp-v4-$interface.conf
  make_resolv_conf() {
    [ -n "$new_domain_name_servers" ] || return 0
    mkdir -p /run/systemd/resolved.conf.d
    {
      echo '[Resolve]'
      echo "DNS=$new_domain_name_servers"
      if [ -n "$new_domain_search" ]; then
        echo "Domains=$new_domain_search"
      elif [ -n "$new_domain_name" ]; then
        echo "Domains=$new_domain_name"
      fi
    } >"$_resolved_conf.new"
    if ! cmp -s "$_resolved_conf.new" "$_resolved_conf"; then
      mv -f "$_resolved_conf.new" "$_resolved_conf"
      systemctl --no-block try-reload-or-restart systemd-resolved.service || :
    else
      rm -f "$_resolved_conf.new"
    fi
  }
  case $reason in
    EXPIRE | FAIL | RELEASE | STOP)
      if [ -e "$_resolved_conf" ]; then
        rm -f "$_resolved_conf"
        systemctl --no-block try-reload-or-restart systemd-resolved.service || :
      fi
      ;;
  esac
fi
HOOK
fi

# ---------------------------------------------------------------------------------------------------------
log "GRUB (BIOS): core.img through grub-mkimage, boot sector through grub-bios-setup"
grub_dir=$root/boot/grub
mkdir -p "$grub_dir/i386-pc"
cp "$root"/usr/lib/grub/i386-pc/*.mod "$root"/usr/lib/grub/i386-pc/*.lst "$root/usr/lib/grub/i386-pc/boot.img" \
  "$grub_dir/i386-pc/"
cat >"$grub_dir/i386-pc/load.cfg" <<EOF
search.fs_uuid $root_uuid root
set prefix=(\$root)/boot/grub
EOF
"${in_root[@]}" grub-mkimage -O i386-pc -d /usr/lib/grub/i386-pc -o /boot/grub/i386-pc/core.img \
  -c /boot/grub/i386-pc/load.cfg -p /boot/grub biosdisk part_msdos ext2 search_fs_uuid
printf '(hd0) %s\n' "$disk_loop" >"$root/tmp/device.map"
"${in_root[@]}" grub-bios-setup -d /boot/grub/i386-pc -m /tmp/device.map "$disk_loop"
rm -f "$root/tmp/device.map"
"${in_root[@]}" grub-editenv /boot/grub/grubenv create
"${in_root[@]}" update-grub
grep -q "^[[:space:]]*linux[[:space:]].*root=UUID=$root_uuid" "$grub_dir/grub.cfg" ||
  die "grub.cfg has no kernel entry with root=UUID=$root_uuid"
rm -f "$root/etc/default/grub.d/99_build_device.cfg"

# ---------------------------------------------------------------------------------------------------------
log "cleanup like the official image"
"${in_root[@]}" usermod -p '*' root      # no root password
# Keep in the download cache the packages of the last image of each variant (the union, so that building
# the variants in turn does not evict the other's), then empty the image's own cache. .debs/.keep-<variant>
# lists the .deb files of that variant's last image.
# shellcheck disable=SC2016 # a dpkg-query format, not shell expansions
deb_format='${Package}_${Version}_${Architecture}.deb\n'
"${in_root[@]}" dpkg-query -W -f "$deb_format" | sed 's/:/%3a/g' >"$debs/.keep-$variant.new"
mv -f "$debs/.keep-$variant.new" "$debs/.keep-$variant"
declare -A keep=()
for list in "$debs"/.keep-*; do
  [[ " ${VARIANTS[*]} " == *" ${list##*/.keep-} "* ]] || { rm -f "$list"; continue; }
  while read -r deb; do
    keep[$deb]=1
  done <"$list"
done
for deb in "$debs"/*.deb; do
  [[ -n ${keep[${deb##*/}]:-} ]] || rm -f "$deb"
done
do_umount "$root/var/cache/apt/archives"
"${in_root[@]}" apt-get clean
rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/dpkg/dpkg.cfg.d/zz-build-unsafe-io"
rm -f "$root"/etc/ssh/ssh_host_*   # cloud-init generates them on first boot
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
: >"$root/etc/hostname"
: >"$root/var/lib/dpkg/available"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/apt \
  "$root"/var/log/{alternatives,bootstrap,dpkg}.log "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
find "$root/tmp" "$root/var/tmp" -mindepth 1 -delete
for m in run dev/pts dev sys proc; do
  do_umount "$root/$m"
done
for m in run dev; do   # nothing may hide under the API mount points
  ! mountpoint -q "$root/$m" || die "$root/$m is still mounted"
  find "$root/$m" -mindepth 1 -delete
done

# Unmount and mount again before fstrim, or the blocks of the last ext4 transaction stay allocated.
log "fstrim and fsck"
do_umount "$root"
do_mount "$root" "$part_loop"
fstrim "$root"
do_umount "$root"
e2fsck -f -y "$part_loop" >&2 || (($? == 1)) || die "e2fsck found errors on the root file system"
losetup -d "$part_loop" "$disk_loop"
loops=()

# ---------------------------------------------------------------------------------------------------------
log "qemu-img convert -c -O qcow2"
run qemu-img convert -c -O qcow2 "$raw" "$work/$image_name"
rm -f "$raw"
qemu-img check -q "$work/$image_name"
(cd "$work" && sha256sum "$image_name" >"$image_name.SHA256SUMS")

# Sums first, then the image: the image's name is what says the build is complete.
mv -f "$work/$image_name.SHA256SUMS" "$image.SHA256SUMS"
mv -f "$work/$image_name" "$image"
log "done: $image ($(du -h "$image" | cut -f1) on disk, $SECONDS s)"
printf '%s\n' "$image" >&3
