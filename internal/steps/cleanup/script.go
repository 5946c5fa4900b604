// Package cleanup renders the last commands of a build: what makes the image generic (no instance identity,
// no host keys, no build user, trimmed free space) and the power-off.
package cleanup

import (
	"fmt"
	"strings"

	"gitlab.com/imgform/imgform/internal/config"
)

// Options are the cleanup settings of an image plus what only the engine knows.
type Options struct {
	config.Cleanup
	// BuildUser is the account imgform logged in with; it is always removed.
	BuildUser string
	// Networks are the image's network units: systemd-networkd takes the interfaces they match over from the
	// source's network stack on the image's next boot (NetworkHandoff).
	Networks []*config.NetworkUnit
}

// Script returns the shell script that cleans the guest, run as root. It ends with a sync and schedules the
// power-off a few seconds later (PowerOff), so the script's exit status still reaches imgform: the build
// user is gone by then, so a later "sudo poweroff" in a new command could no longer run. Every command tolerates what is already absent,
// so a cleanup that is resumed or run on an image without, say, D-Bus does not fail.
//
// The order matters: trim and log work first; the SSH host keys and the build user last, because once the
// host keys are gone sshd refuses new connections (field notes), and this session is the last one.
func Script(o Options) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("set -eu")
	w("export DEBIAN_FRONTEND=noninteractive")
	b.WriteString(NetworkHandoff(o.Networks))
	if o.Resolved {
		w("# DNS through systemd-resolved's stub resolver")
		w("ln -sfn /run/systemd/resolve/stub-resolv.conf /etc/resolv.conf")
	}
	if o.AptLists {
		w("apt-get clean")
		w("rm -rf /var/lib/apt/lists/*")
	}
	if o.CloudInit {
		w("# the image's first boot must be a first boot for cloud-init")
		w("cloud-init clean --logs --seed")
	}
	if o.Logs {
		w("# empty logs; journald would recreate its folder at shutdown unless it lets go of /var first")
		w("journalctl --rotate >/dev/null 2>&1 || true")
		w("journalctl --relinquish-var >/dev/null 2>&1 || true")
		w("rm -rf /var/log/journal/*")
		w("find /var/log -type f \\( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \\) -delete")
		w("find /var/log -type f -exec truncate -s 0 {} +")
	}
	if o.MachineID {
		w("# a new machine-id per instance; D-Bus links to it on Debian")
		w("truncate -s 0 /etc/machine-id")
		w("if [ -e /var/lib/dbus/machine-id ] || [ -L /var/lib/dbus/machine-id ]; then ln -sfn /etc/machine-id /var/lib/dbus/machine-id; fi")
		w("rm -f /var/lib/systemd/random-seed")
	}
	u := shellQuote(o.BuildUser)
	// The user's processes are left alone: one of them is the sshd session running this script, and
	// killing it would drop the connection (seen on a real guest). userdel --force removes a logged-in
	// user; the processes end with the power-off.
	w("# the build user and every trace of its key")
	w("sed -i '/^%s[[:space:]]/d' /etc/sudoers.d/90-cloud-init-users 2>/dev/null || true", sedEscape(o.BuildUser))
	w("rm -f /etc/sudoers.d/%s", u)
	w("userdel --force --remove %s >/dev/null 2>&1 || true", u)
	w("rm -rf /home/%s", u)
	w("if id %s >/dev/null 2>&1; then echo 'imgform: the build user is still there' >&2; exit 1; fi", u)
	if o.SSHHostKeys {
		w("# regenerated per instance by cloud-init")
		w("rm -f /etc/ssh/ssh_host_*")
	}
	w("sync")
	if o.ZeroFreeSpace {
		// Last of the deletions: the trim frees only whole 64 KiB clusters of the disk layer, so a deleted
		// file's 4 KiB blocks that share a cluster with live data reach the export. dd ends with ENOSPC,
		// which is the point; the fill file goes before anything else needs the space.
		w("# overwrite what deleted files left in free space (cloud-init's user-data, the build key)")
		b.WriteString(zeroFill("$(findmnt -rn -O rw -o TARGET -t ext2,ext3,ext4,xfs,btrfs,vfat 2>/dev/null || echo /)"))
		w("sync")
	}
	if o.Trim {
		w("# discard free blocks so the export stays small; a second sync after fstrim")
		w("fstrim --all --verbose || fstrim --verbose / || true")
		w("sync")
	}
	w(PowerOff)
	return b.String()
}

// zeroFill returns commands that fill the free space of each file system mounted at the targets the shell
// words mounts expand to with a file of zeros, then delete it. dd ends with ENOSPC, which is the point.
//
// Three things ext4 does would leave deleted blocks unwritten (seen on loop-mounted ext4): with buffered
// writes delayed allocation reserves room for metadata it may never need and reports ENOSPC early, so the
// fill writes with O_DIRECT where it can; the last 2 % of the blocks (up to 64 MiB with 4 KiB clusters,
// reserved_clusters) are kept back even from root, so that reserve is 0 while the fill runs; and a block
// that the fill's extent tree took and gave back within one journal transaction is never written at all,
// so the fill is synced before it is deleted.
func zeroFill(mounts string) string {
	return "for m in " + mounts + "; do\n" +
		"  f=\"$m/.imgform-zero\"\n" +
		"  d=$(basename \"$(findmnt -n -o SOURCE --target \"$m\" 2>/dev/null || true)\" 2>/dev/null || true)\n" +
		"  rc=\"/sys/fs/ext4/${d:-none}/reserved_clusters\"\n" +
		"  r=\n" +
		"  if [ -w \"$rc\" ]; then r=$(cat \"$rc\"); echo 0 >\"$rc\"; fi\n" +
		"  if dd if=/dev/zero of=\"$f\" bs=4k count=1 oflag=direct status=none 2>/dev/null; then o=oflag=direct; else o=conv=fsync; fi\n" +
		"  dd if=/dev/zero of=\"$f\" bs=4M $o status=none 2>/dev/null || true\n" +
		"  sync\n" +
		"  rm -f \"$f\"\n" +
		"  sync\n" +
		"  if [ -n \"$r\" ]; then echo \"$r\" >\"$rc\"; fi\n" +
		"done\n"
}

// PowerOff schedules the power-off outside this session, which ends normally first.
const PowerOff = "systemd-run --quiet --on-active=3 --timer-property=AccuracySec=100ms /bin/systemctl poweroff"

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func sedEscape(s string) string {
	r := strings.NewReplacer(`/`, `\/`, `.`, `\.`, `*`, `\*`, `[`, `\[`, `]`, `\]`, `^`, `\^`, `$`, `\$`, `'`, `'\''`)
	return r.Replace(s)
}
