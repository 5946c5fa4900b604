package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"time"

	"gitlab.com/imgform/imgform/internal/debuglog"
	"gitlab.com/imgform/imgform/internal/fsutil"
)

// The guest's network. QEMU's user-mode network (slirp) maps the gateway address 10.0.2.2 to the host's
// 127.0.0.1, so a guest reaches every service that listens on the build host's loopback only (a Docker API,
// a secrets agent, a database for tests). passt (https://passt.top) gives the guest the same outside access
// without that mapping (--no-map-gw): a connection to the gateway goes to the real gateway, and nothing the
// guest can address is the host's loopback.
const (
	// NetworkIsolated is passt without a way to the host's loopback: the default where passt is installed.
	NetworkIsolated = "isolated"
	// NetworkUser is QEMU's user-mode network: the guest reaches the host's loopback at 10.0.2.2.
	NetworkUser = "user"
)

// PasstBinary is the passt program Start runs for NetworkIsolated.
var PasstBinary = "passt"

// Files of the state folder for NetworkIsolated.
const (
	PasstSocketName = "net.sock"
	PasstLogName    = "passt.log"
)

// passtReadyTimeout bounds how long passt may take to bind the SSH port and its socket (half a second here).
const passtReadyTimeout = 30 * time.Second

// passtPortTaken is what passt says when the forwarded port is taken.
const passtPortTaken = "Failed to bind any port"

// The guest's address and gateway under passt are the same on every host, those of QEMU's user-mode
// network: passt's default would be the host's own address and gateway, which would put them into the
// guest's lease files, and would make a VM state saved on one host (saved-states.md) wrong on another. With
// --no-map-gw the gateway is not the host.
const (
	guestAddr      = "10.0.2.15"
	guestPrefixLen = "24"
	guestGateway   = "10.0.2.2"
)

// The guest's DNS. passt announces the IPv4 nameservers of the host's /etc/resolv.conf. A nameserver on the
// host's loopback (systemd-resolved's stub 127.0.0.53, a local dnsmasq) is nothing the guest can use, and
// Debian 12's passt (git 2023-03-09) cannot relay to it while announcing another address: its --dns makes it
// skip resolv.conf, after which --dns-forward relays to 0.0.0.0 (read in its conf.c and udp.c; the guest
// resolved nothing). So where every nameserver is on loopback, imgform announces the upstream servers that
// systemd-resolved lists in upstreamResolvConf, which the guest reaches through passt like any other
// address; where there are none, ResolveNetwork warns that the guest has no DNS.
var (
	hostResolvConf     = "/etc/resolv.conf"
	upstreamResolvConf = "/run/systemd/resolve/resolv.conf"
)

// guestDNS returns the nameservers to announce with --dns (nil: passt's own choice, the host's) and whether
// the guest gets any.
func guestDNS() (servers []string, ok bool) {
	own, loopbackOnly := nameservers(hostResolvConf)
	if !loopbackOnly {
		return nil, len(own) > 0
	}
	upstream, upstreamLoopback := nameservers(upstreamResolvConf)
	if upstreamLoopback || len(upstream) == 0 {
		return nil, false
	}
	return upstream, true
}

// ResolveNetwork picks the guest's network for a machine block's host_loopback (nil: not set). An explicit
// false needs passt; unset means isolated where passt is installed, and otherwise the user-mode network with
// a warning that says what the guest can reach and how to change it.
func ResolveNetwork(hostLoopback *bool) (mode, warning string, err error) {
	if hostLoopback != nil && *hostLoopback {
		return NetworkUser, "", nil
	}
	if _, err := exec.LookPath(PasstBinary); err != nil {
		if hostLoopback != nil {
			return "", "", fmt.Errorf("machine.host_loopback = false needs passt, which is not installed (Debian and Ubuntu: apt-get install passt; Fedora: dnf install passt)")
		}
		return NetworkUser, "passt is not installed, so the build VM uses QEMU's user-mode network, in which the guest reaches every service on this host's loopback at 10.0.2.2; install passt (apt-get install passt) to cut that off, or set machine.host_loopback = true to keep it and silence this warning", nil
	}
	if _, ok := guestDNS(); !ok {
		return NetworkIsolated, fmt.Sprintf("the build VM gets no DNS server: the nameservers of %s are all on this host's "+
			"loopback, where the guest cannot reach them, and %s names no upstream server; point %s at a server the "+
			"host reaches on another address, or set machine.host_loopback = true (the guest then reaches this host's "+
			"loopback at 10.0.2.2, its DNS server included)", hostResolvConf, upstreamResolvConf, hostResolvConf), nil
	}
	return NetworkIsolated, "", nil
}

// passtGuard runs passt ("$@") under a shell that kills it when the shell gets SIGTERM, which the kernel
// sends when imgform dies (guardProcAttr). passt itself cannot be tied to imgform: it drops to user nobody,
// which clears its own parent-death signal, and its --one-off mode (exit when QEMU disconnects) exits at
// once in Debian 12's version. Without the guard a kill -9 of imgform would leave passt running for ever.
const passtGuard = `"$@" & pid=$!; trap 'kill -KILL $pid 2>/dev/null; exit 143' TERM INT HUP; wait $pid`

// passtArgs is passt's command line: in the foreground, with no gateway mapping, the guest's fixed address
// and gateway, its DNS servers (guestDNS), the SSH port forwarded from 127.0.0.1 (never all interfaces: the
// build key is the only lock on the guest), no other forward, its log in the state folder.
func passtArgs(socket, logFile string, sshPort int, dns []string) []string {
	args := []string{PasstBinary, "--foreground", "--quiet", "--no-map-gw", "--runas", passtUser(),
		"--socket", socket, "--log-file", logFile,
		"--address", guestAddr, "--netmask", guestPrefixLen, "--gateway", guestGateway,
		"--tcp-ports", fmt.Sprintf("127.0.0.1/%d:22", sshPort), "--udp-ports", "none"}
	for _, d := range dns {
		args = append(args, "--dns", d)
	}
	return args
}

// passtUser is who passt runs as: the invoking user, or "nobody" for root (passt's own default, said
// explicitly so that passtSocketDir and passt agree).
func passtUser() string {
	if os.Geteuid() == 0 {
		return "nobody"
	}
	return strconv.Itoa(os.Geteuid())
}

// passtSocketDir makes a private folder under the temporary folder for passt's socket. passt creates the
// socket after it has dropped to its user, which cannot reach root's state folders (~/.cache is 0700), so
// for root the folder belongs to passtUser: only that user and root can reach the socket, and QEMU connects
// to it milliseconds after passt created it. QEMU, the only client passt serves, runs as root.
func passtSocketDir() (string, error) {
	dir, err := os.MkdirTemp("", "imgform-net-")
	if err != nil {
		return "", fmt.Errorf("qemu: folder for passt's socket: %w", err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup(passtUser())
		if err == nil {
			var uid, gid int
			if uid, err = strconv.Atoi(u.Uid); err == nil {
				if gid, err = strconv.Atoi(u.Gid); err == nil {
					err = os.Chown(dir, uid, gid)
				}
			}
		}
		if err != nil {
			return "", errors.Join(fmt.Errorf("qemu: folder for passt's socket: user %s: %w", passtUser(), err), os.Remove(dir))
		}
	}
	return dir, nil
}

// nameservers returns the IPv4 nameservers of a resolv.conf and whether there are some and all are on the
// host's loopback. A missing file has none.
func nameservers(path string) (servers []string, loopbackOnly bool) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	defer func() { _ = f.Close() }() // read only
	loopbackOnly = true
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(fields[1])
		if err != nil || !a.Is4() {
			continue
		}
		servers = append(servers, a.String())
		loopbackOnly = loopbackOnly && a.IsLoopback()
	}
	return servers, loopbackOnly && len(servers) > 0
}

// startPasst starts passt for the VM, under its guard in a process group of their own, and waits until it
// listens on its socket (it binds the SSH port before that). The VM kills the group once QEMU has exited.
func (vm *VM) startPasst(ctx context.Context, port int) (*process, *fsutil.TailBuffer, error) {
	for _, f := range []string{vm.paths.net, vm.paths.passtLog} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("qemu: remove stale %w", err)
		}
	}
	dns, _ := guestDNS()
	argv := passtArgs(vm.paths.net, vm.paths.passtLog, port, dns)
	debuglog.Debugf("passt", "starting %s", quoteArgs(argv))
	cmd := exec.Command("/bin/sh", append([]string{"-c", passtGuard, "passt"}, argv...)...)
	cmd.SysProcAttr = guardProcAttr()
	cmd.Dir = vm.opts.StateDir
	out := fsutil.NewTailBuffer(16 * 1024)
	cmd.Stdout, cmd.Stderr = out, out
	p, err := startProcess(cmd)
	if err != nil {
		return nil, nil, fmt.Errorf("qemu: start %s for the guest's network: %w", argv[0], err)
	}
	rctx, cancel := context.WithTimeout(ctx, passtReadyTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(vm.paths.net); err == nil {
			return p, out, nil
		}
		select {
		case <-p.exited:
			return nil, out, fmt.Errorf("qemu: passt exited at start (%w): %s", p.exitErr(), passtMessage(out.String()))
		case <-rctx.Done():
			p.kill()
			<-p.exited
			return nil, out, fmt.Errorf("qemu: passt did not set up its socket %s: %w", vm.paths.net, rctx.Err())
		case <-tick.C:
		}
	}
}

// passtMessage is what passt printed, without its complaints about a missing syslog.
func passtMessage(out string) string {
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "Failed to send") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "; ")
}
