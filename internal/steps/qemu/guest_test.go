package qemu_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gitlab.com/imgform/imgform/internal/steps/qemu"
	"gitlab.com/imgform/imgform/internal/steps/qemu/qemutest"
	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// TestGuest boots the test image once (see TestMain) and runs the checks that need a real guest, in order:
// each step leaves the VM in the state the next one needs. It also proves the layering the engine relies
// on: a layer cut with Snapshot while the guest runs holds what was written before the cut and nothing
// after it, and boots on its own.
func TestGuest(t *testing.T) {
	needQEMU(t)
	g := sharedGuest(t)
	ctx := shared.ctx
	layer1, err := filepath.Abs(g.Disk)
	if err != nil {
		t.Fatal(err)
	}
	layer2 := filepath.Join(shared.dir, "layer2.qcow2")
	// After the cut the finished layer moves (as the VM runner commits it into the store while the guest
	// runs on); the new overlay names it by that future path from the start.
	moved := filepath.Join(shared.dir, "moved", "layer1.qcow2")
	var (
		client *ssh.Client
		hk     *ssh.HostKeys
	)
	if !t.Run("ssh login", func(t *testing.T) {
		client, hk, err = g.Dial(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("SSH login %s after QEMU started", time.Since(shared.start).Round(time.Second))
		if len(hk.Accepted()) != 1 {
			t.Errorf("accepted host keys %d, want 1", len(hk.Accepted()))
		}
	}) {
		t.FailNow()
	}
	defer func() {
		// After the poweroff below the connection is gone; closing it can only report that.
		_ = client.Close()
	}()

	t.Run("serial log", func(t *testing.T) {
		b, err := os.ReadFile(g.VM.SerialLog())
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Linux version", "cloud-init"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("serial log lacks %q", want)
			}
		}
		if tail := g.VM.Tail(5); tail == "" || strings.Contains(tail, "\x1b[") {
			t.Errorf("Tail(5) = %q", tail)
		}
	})

	t.Run("query-status", func(t *testing.T) {
		st, err := g.VM.Status(ctx)
		if err != nil || !st.Running || st.Status != "running" {
			t.Errorf("query-status = %+v, %v", st, err)
		}
	})

	// The default network (passt) gives the guest no way to the host's loopback: neither slirp's 10.0.2.2
	// nor the gateway address reach a server on the host's 127.0.0.1, while the guest's own loopback works
	// (the probe itself is sound).
	t.Run("host loopback out of reach", func(t *testing.T) {
		srv := qemutest.ListenLoopback(t)
		port := srv.Port
		probe := fmt.Sprintf(`gw=$(ip -4 route show default | awk '{print $3; exit}')
echo "gateway $gw"
for a in 10.0.2.2 "$gw"; do
  if timeout 5 bash -c "exec 3<>/dev/tcp/$a/%d" 2>/dev/null; then echo "reached $a"; fi
done
timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/22' && echo own-loopback-ok`, port)
		var out strings.Builder
		if _, err := client.Run(ctx, probe, ssh.RunOptions{Stdout: &out, Stderr: &out}); err != nil {
			t.Fatal(err)
		}
		t.Logf("probe:\n%s", out.String())
		if strings.Contains(out.String(), "reached") || srv.Accepted() != 0 {
			t.Errorf("the guest reached the host's loopback (%d connections):\n%s", srv.Accepted(), out.String())
		}
		if !strings.Contains(out.String(), "own-loopback-ok") || !strings.Contains(out.String(), "gateway ") {
			t.Errorf("the probe did not run as meant:\n%s", out.String())
		}
	})

	if !t.Run("snapshot layering", func(t *testing.T) {
		mustRun(t, client, "echo first > first.txt && sync")
		info, err := qemu.Info(ctx, layer1)
		if err != nil {
			t.Fatal(err)
		}
		if err := qemu.CreateOverlayUnchecked(ctx, layer2, "moved/layer1.qcow2", "qcow2", info.VirtualSize, 0); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		prev, err := g.VM.Snapshot(ctx, layer2)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("blockdev-add and blockdev-snapshot took %s", time.Since(start).Round(time.Millisecond))
		if prev != layer1 || g.VM.ActiveDisk() != layer2 {
			t.Errorf("Snapshot returned %s, active %s; want %s then %s", prev, g.VM.ActiveDisk(), layer1, layer2)
		}
		if info, err = qemu.Info(ctx, layer2); err != nil {
			t.Fatal(err)
		}
		t.Logf("new overlay's backing field: %q (format %q)", info.BackingFilename, info.BackingFormat)
		if info.BackingFilename != "moved/layer1.qcow2" {
			t.Errorf("backing field %q, want moved/layer1.qcow2 as written before the snapshot", info.BackingFilename)
		}
		blocks := queryBlock(ctx, t, g.VM)
		t.Logf("active node after the snapshot: %s", blocks)
		// The new layer must turn written zeros into zero clusters, as the first one does, and keep the
		// drive's cache mode (unsafe: no flushes).
		// QEMU names a node opened without its backing and stacked later by a json: description that
		// holds the file name.
		for _, want := range []string{layer2, "detect_zeroes=unmap", "no-flush=true"} {
			if !strings.Contains(blocks, want) {
				t.Errorf("active node after the snapshot: %s; want %s", blocks, want)
			}
		}
		if _, err := g.VM.Snapshot(ctx, filepath.Join(shared.dir, "missing.qcow2")); err == nil {
			t.Error("a snapshot onto a missing overlay succeeded")
		}
		if err := os.MkdirAll(filepath.Dir(moved), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(layer1, moved); err != nil {
			t.Fatal(err)
		}
		mustRun(t, client, "echo second > second.txt && sync")
	}) {
		t.FailNow()
	}

	// The state saved while the guest is paused, with the layer cut at the same moment, resumes in a new
	// QEMU on that layer: the guest's processes and /run are there, and it answers SSH at once.
	t.Run("save and restore state", func(t *testing.T) {
		mustRun(t, client, "nohup sleep 100000 >/dev/null 2>&1 & echo $! | sudo tee /run/imgform-sleeper >/dev/null; sync")

		// The caches the guest drops go back to the host (free page reporting), so the state leaves them out.
		mustRun(t, client, "cat /usr/bin/* /usr/lib/x86_64-linux-gnu/*.so* >/dev/null 2>&1; sync; echo 3 | sudo tee /proc/sys/vm/drop_caches >/dev/null")
		freed, waited, err := g.VM.SettleMemory(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("the guest handed back %d MB of its dropped caches in %s", freed>>20, waited.Round(10*time.Millisecond))
		if freed < 16<<20 {
			t.Errorf("the guest handed back %d bytes after dropping its caches, want its free memory back", freed)
		}

		layer3 := filepath.Join(shared.dir, "layer3.qcow2")
		info, err := qemu.Info(ctx, layer2)
		if err != nil {
			t.Fatal(err)
		}
		if err := qemu.CreateOverlayUnchecked(ctx, layer3, layer2, "qcow2", info.VirtualSize, 0); err != nil {
			t.Fatal(err)
		}
		stateFile := filepath.Join(shared.dir, "vmstate")
		f, err := os.Create(stateFile)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var stopped qemu.Status
		n, err := g.VM.SaveState(ctx, f, func() error {
			var err error
			if stopped, err = g.VM.Status(ctx); err != nil {
				return err
			}
			_, err = g.VM.Snapshot(ctx, layer3)
			return err
		})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("saved %d MB of state in %s", n>>20, time.Since(start).Round(time.Millisecond))
		if stopped.Running {
			t.Errorf("while SaveState ran atStop: %+v; want the guest stopped", stopped)
		}
		if st, err := g.VM.Status(ctx); err != nil || !st.Running {
			t.Errorf("after SaveState: %+v, %v; want the guest running again", st, err)
		}

		mustRun(t, client, "echo after-save > after-save.txt && sync")

		dir := filepath.Join(shared.dir, "restore")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		top := filepath.Join(dir, "top.qcow2")
		if err := qemu.CreateOverlay(ctx, top, layer2, "qcow2", 0, 0); err != nil {
			t.Fatal(err)
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		g2, err := qemutest.Boot(ctx, qemutest.Options{Dir: dir, Disk: top, Seed: g.Seed, Key: g.Key, Incoming: pr})
		if err != nil {
			t.Fatal(err)
		}
		defer g2.Close()
		saved, err := os.Open(stateFile)
		if err != nil {
			t.Fatal(err)
		}
		defer saved.Close()
		if err := g2.VM.Restore(ctx, pw, saved); err != nil {
			t.Fatal(err)
		}
		if st, err := g2.VM.Status(ctx); err != nil || st.Running {
			t.Errorf("after Restore: %+v, %v; want the VM paused until Continue", st, err)
		}
		if err := g2.VM.Continue(ctx); err != nil {
			t.Fatal(err)
		}
		dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		c2, _, err := g2.Dial(dctx, ssh.PinKeys(hk.Accepted()...))
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		t.Logf("restored guest: SSH login %s after QEMU started", time.Since(start).Round(100*time.Millisecond))
		out, code, err := c2.Output(ctx, "kill -0 $(cat /run/imgform-sleeper) && echo sleeper-alive; cat first.txt; test -e after-save.txt && echo after-save-present || echo after-save-absent", ssh.RunOptions{})
		if err != nil || code != 0 {
			t.Fatalf("check the restored guest: %d, %v\n%s", code, err, out)
		}
		if got := strings.Fields(string(out)); !slices.Equal(got, []string{"sleeper-alive", "first", "after-save-absent"}) {
			t.Errorf("the restored guest says %q, want its sleeper alive, first.txt, and nothing written after the save", got)
		}

		// A state whose bytes are damaged is refused before the guest runs.
		damaged, err := os.ReadFile(stateFile)
		if err != nil {
			t.Fatal(err)
		}
		pr3, pw3, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		dir3 := filepath.Join(shared.dir, "restore-bad")
		if err := os.Mkdir(dir3, 0o755); err != nil {
			t.Fatal(err)
		}
		top3 := filepath.Join(dir3, "top.qcow2")
		if err := qemu.CreateOverlay(ctx, top3, layer2, "qcow2", 0, 0); err != nil {
			t.Fatal(err)
		}
		g3, err := qemutest.Boot(ctx, qemutest.Options{Dir: dir3, Disk: top3, Seed: g.Seed, Key: g.Key, Incoming: pr3})
		if err != nil {
			t.Fatal(err)
		}
		defer g3.Close()
		err = g3.VM.Restore(ctx, pw3, strings.NewReader(string(damaged[:len(damaged)/2])))
		t.Logf("restore of half a state: %v", err)
		if err == nil {
			t.Error("half a state restored without an error")
		}
	})

	if !t.Run("guest poweroff", func(t *testing.T) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		start := time.Now()
		// The session ends with exit code 0 or with the connection cut as sshd stops: both are fine.
		code, err := client.Run(pctx, "sudo -n poweroff", ssh.RunOptions{})
		t.Logf("poweroff: exit code %d, %v", code, err)
		select {
		case <-g.VM.Exited():
		case <-pctx.Done():
			t.Fatalf("QEMU still runs after the guest's poweroff\n%s", g.VM.Tail(20))
		}
		t.Logf("QEMU exited %s after poweroff", time.Since(start).Round(time.Second))
		if err := g.VM.Wait(); err != nil {
			t.Errorf("Wait after a guest poweroff = %v, want exit status 0", err)
		}
		ev, ok := g.VM.ShutdownEvent()
		if !ok || !ev.Guest || ev.Reason != "guest-shutdown" {
			t.Errorf("SHUTDOWN event %+v (%v), want guest-shutdown from the guest", ev, ok)
		}
		if reason, err := g.VM.Shutdown(ctx, time.Minute); reason != "guest-shutdown" || err != nil {
			t.Errorf("Shutdown of an exited VM = %q, %v", reason, err)
		}
	}) {
		t.FailNow()
	}

	t.Run("backing chain", func(t *testing.T) {
		chain, err := qemu.BackingChain(ctx, layer2)
		if err != nil {
			t.Fatal(err)
		}
		if len(chain) != 3 || chain[1].Filename != moved {
			t.Fatalf("chain of %d images %+v, want layer2 -> moved layer1 -> test image", len(chain), chain)
		}
		// The layer moved while QEMU had it open is intact.
		if out, err := exec.CommandContext(ctx, "qemu-img", "check", moved).CombinedOutput(); err != nil {
			t.Errorf("qemu-img check of the moved layer: %v\n%s", err, out)
		}
	})

	t.Run("first layer boots alone", func(t *testing.T) {
		dir := filepath.Join(shared.dir, "check")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		top := filepath.Join(dir, "top.qcow2")
		if err := qemu.CreateOverlay(ctx, top, "../moved/layer1.qcow2", "qcow2", 0, 0); err != nil {
			t.Fatal(err)
		}
		// The same seed: same instance, so cloud-init keeps the host keys and prints none. The host key is
		// pinned from what the first boot accepted, as the engine does when it resumes from a cached layer.
		g2, err := qemutest.Boot(ctx, qemutest.Options{Dir: dir, Disk: top, Seed: g.Seed, Key: g.Key})
		if err != nil {
			t.Fatal(err)
		}
		defer g2.Close()
		start := time.Now()
		c2, _, err := g2.Dial(ctx, ssh.PinKeys(hk.Accepted()...))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("second boot: SSH login after %s", time.Since(start).Round(time.Second))
		out, code, err := c2.Output(ctx, "cat first.txt; test -e second.txt && echo second-present || echo second-absent", ssh.RunOptions{})
		if err != nil || code != 0 {
			t.Fatalf("check files: %d, %v", code, err)
		}
		if got := strings.Fields(string(out)); !slices.Equal(got, []string{"first", "second-absent"}) {
			t.Errorf("the first layer holds %q, want first.txt and no second.txt", got)
		}
		if b, err := os.ReadFile(g2.VM.SerialLog()); err != nil || strings.Contains(string(b), "BEGIN SSH HOST KEY KEYS") {
			t.Errorf("the second boot printed host keys again (%v): the resume design assumes it does not", err)
		}

		t.Run("powerdown via QMP", func(t *testing.T) {
			start := time.Now()
			reason, err := g2.VM.Shutdown(ctx, 5*time.Minute)
			t.Logf("system_powerdown to exit: %s", time.Since(start).Round(100*time.Millisecond))
			if err != nil || reason != "guest-shutdown" {
				t.Errorf("Shutdown = %q, %v; want guest-shutdown", reason, err)
			}
			names := []string{}
			for _, ev := range g2.VM.Events() {
				names = append(names, ev.Name)
			}
			if !slices.Contains(names, "POWERDOWN") || !slices.Contains(names, "SHUTDOWN") {
				t.Errorf("events %v, want POWERDOWN and SHUTDOWN", names)
			}
		})
		_ = c2.Close() // the guest is off: the connection is gone either way
	})
}

func mustRun(t *testing.T, c *ssh.Client, cmd string) {
	t.Helper()
	var out strings.Builder
	code, err := c.Run(shared.ctx, cmd, ssh.RunOptions{Stdout: &out, Stderr: &out})
	if err != nil || code != 0 {
		t.Fatalf("%s: exit code %d, %v\n%s", cmd, code, err, out.String())
	}
}

// queryBlock describes the disk's active node: file, backing file, detect-zeroes and cache settings.
func queryBlock(ctx context.Context, t *testing.T, vm *qemu.VM) string {
	t.Helper()
	var blocks []struct {
		Device   string `json:"device"`
		Inserted struct {
			File         string `json:"file"`
			BackingFile  string `json:"backing_file"`
			DetectZeroes string `json:"detect_zeroes"`
			Cache        struct {
				NoFlush bool `json:"no-flush"`
			} `json:"cache"`
		} `json:"inserted"`
	}
	if err := vm.QMP().Execute(ctx, "query-block", nil, &blocks); err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		if b.Device == qemu.DiskID {
			i := b.Inserted
			return "file=" + i.File + " backing=" + i.BackingFile + " detect_zeroes=" + i.DetectZeroes +
				" no-flush=" + map[bool]string{true: "true", false: "false"}[i.Cache.NoFlush]
		}
	}
	return "disk0 not found"
}
