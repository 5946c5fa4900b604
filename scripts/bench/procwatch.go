package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// pollInterval is how often /proc is read. QEMU sessions last minutes; 100 ms is well below the
// resolution the figures need and costs about a millisecond of CPU per scan.
const pollInterval = 100 * time.Millisecond

// qemuProc is one qemu-system process seen while imgform ran.
type qemuProc struct {
	PID         int
	First, Last time.Time // first and last sample that saw it alive
	Cmdline     string
}

// procReport is what the watcher saw during one imgform run.
type procReport struct {
	// Guests are imgform's VMs: qemu-system processes whose command line holds the cache folder (their
	// disks live in its work folder).
	Guests []*qemuProc
	// Probes are qemu-system children of imgform without the cache folder on the command line: the
	// accelerator probe that checks whether KVM really runs guests.
	Probes []*qemuProc
	// GuestAlive is when at least one guest was alive, at the poll resolution.
	GuestAlive spans
	// ProbeAlive is when a probe was alive.
	ProbeAlive spans
	// MaxGuests is the most guests alive in one sample: 2 means two VMs ran side by side.
	MaxGuests int
	// ForeignMax is the most qemu-system processes of others (other engineers' guests) alive in one
	// sample; ForeignShare the share of samples that saw at least one.
	ForeignMax   int
	ForeignShare float64
	Samples      int
}

// watcher polls /proc for the QEMU processes of one imgform process. It looks from the outside on
// purpose: the figures must not depend on what imgform reports about itself.
type watcher struct {
	ppid   int    // the imgform process
	marker string // the cache folder, which every guest's command line contains
	stop   chan struct{}
	done   chan struct{}

	mu     sync.Mutex
	rep    procReport
	procs  map[int]*qemuProc
	guests map[int]bool
	last   time.Time
	alive  []span // sample intervals with a guest alive
	probe  []span
	fsamp  int
}

func startWatcher(ppid int, marker string) *watcher {
	w := &watcher{ppid: ppid, marker: marker, stop: make(chan struct{}), done: make(chan struct{}),
		procs: map[int]*qemuProc{}, guests: map[int]bool{}}
	go w.loop()
	return w
}

func (w *watcher) loop() {
	defer close(w.done)
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	w.sample()
	for {
		select {
		case <-w.stop:
			w.sample()
			return
		case <-t.C:
			w.sample()
		}
	}
}

// Stop ends the polling and returns the report.
func (w *watcher) Stop() procReport {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.rep
	for pid, p := range w.procs {
		if w.guests[pid] {
			r.Guests = append(r.Guests, p)
		} else {
			r.Probes = append(r.Probes, p)
		}
	}
	r.GuestAlive = union(w.alive...)
	r.ProbeAlive = union(w.probe...)
	if r.Samples > 0 {
		r.ForeignShare = float64(w.fsamp) / float64(r.Samples)
	}
	return r
}

// sample reads /proc once. The interval since the previous sample counts as "alive" when this sample
// still sees the process, so the alive time is accurate to one poll interval.
func (w *watcher) sample() {
	now := time.Now()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	guests, probes, foreign := 0, 0, 0
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, state, ppid, ok := readStat(pid)
		// The kernel cuts comm to 15 characters: "qemu-system-x86".
		if !ok || !strings.HasPrefix(comm, "qemu-system") || state == "Z" || state == "X" {
			continue
		}
		p := w.procs[pid]
		if p == nil {
			cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			line := strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
			guest := strings.Contains(line, w.marker)
			if !guest && ppid != w.ppid {
				foreign++
				continue
			}
			p = &qemuProc{PID: pid, First: now, Cmdline: line}
			w.procs[pid] = p
			w.guests[pid] = guest
		}
		p.Last = now
		if w.guests[pid] {
			guests++
		} else {
			probes++
		}
	}
	if !w.last.IsZero() {
		if guests > 0 {
			w.alive = append(w.alive, span{w.last, now})
		}
		if probes > 0 {
			w.probe = append(w.probe, span{w.last, now})
		}
	}
	w.last = now
	w.rep.Samples++
	w.rep.MaxGuests = max(w.rep.MaxGuests, guests)
	w.rep.ForeignMax = max(w.rep.ForeignMax, foreign)
	if foreign > 0 {
		w.fsamp++
	}
}

// readStat returns the command name, state and parent pid from /proc/PID/stat.
func readStat(pid int) (comm, state string, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", "", 0, false // gone meanwhile
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses, so cut at the last ")".
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return "", "", 0, false
	}
	fields := strings.Fields(string(b[end+1:]))
	if len(fields) < 2 {
		return "", "", 0, false
	}
	ppid, err = strconv.Atoi(fields[1])
	return string(b[open+1 : end]), fields[0], ppid, err == nil
}
