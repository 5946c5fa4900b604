package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/stat; 100 on every Linux the bench runs on.
const clockTicks = 100

// loadMeter tells how much CPU other processes took while a measurement ran. The machine has two cores
// that other engineers share: a figure taken while someone else's guest ran is slower, and the report
// must say so. Other = CPU the whole machine spent (from /proc/stat) minus what the bench and its
// children spent (getrusage of self and of waited-for children, which includes imgform, its QEMU and
// qemu-img processes, and the zstd tool).
type loadMeter struct {
	start      time.Time
	busy0      time.Duration
	self0, ch0 time.Duration
	load0      string
	qemu0      int
}

// load is the outcome of a loadMeter.
type load struct {
	Wall   time.Duration
	Ours   time.Duration // CPU time of the bench and its children
	Others time.Duration // CPU time of everything else
	Cores  int
	Load   string // the 1-minute load average at start and end
	// Qemu is the number of qemu-system processes at start and end. For the export comparison, where the
	// bench runs no QEMU, they are all other engineers' guests.
	Qemu string
}

// OthersShare is the share of the machine's capacity that other processes used.
func (l load) OthersShare() float64 {
	if l.Wall <= 0 || l.Cores == 0 {
		return 0
	}
	return l.Others.Seconds() / (l.Wall.Seconds() * float64(l.Cores))
}

func startLoad() *loadMeter {
	return &loadMeter{start: time.Now(), busy0: machineBusy(), self0: rusage(syscall.RUSAGE_SELF),
		ch0: rusage(syscall.RUSAGE_CHILDREN), load0: loadavg(), qemu0: countQemu()}
}

// Stop must come after the children of the measurement were waited for.
func (m *loadMeter) Stop(cores int) load {
	busy := machineBusy() - m.busy0
	ours := rusage(syscall.RUSAGE_SELF) - m.self0 + rusage(syscall.RUSAGE_CHILDREN) - m.ch0
	return load{Wall: time.Since(m.start), Ours: ours, Others: max(0, busy-ours), Cores: cores,
		Load: m.load0 + " -> " + loadavg(), Qemu: strconv.Itoa(m.qemu0) + " -> " + strconv.Itoa(countQemu())}
}

// machineBusy is the CPU time all cores spent outside idle and iowait since boot. Steal (time the
// hypervisor gave to other VMs) is left out: nothing on this machine used it.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var ticks int64
	for i, v := range f {
		if i == 0 || i == 4 || i == 5 || i >= 8 {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

func rusage(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// countQemu counts the live qemu-system processes of the machine.
func countQemu() int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, state, _, ok := readStat(pid); ok && strings.HasPrefix(comm, "qemu-system") && state != "Z" {
			n++
		}
	}
	return n
}
