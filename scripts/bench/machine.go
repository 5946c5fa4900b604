package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// machineInfo describes the host the figures come from; the report is worthless without it.
type machineInfo struct {
	CPU, Memory, OS, Kernel, QEMU, QemuImg string
	Cores                                  int
}

func describeMachine(ctx context.Context) machineInfo {
	m := machineInfo{Cores: runtime.NumCPU()}
	m.CPU = procField("/proc/cpuinfo", "model name", ":")
	if kb, err := strconv.ParseInt(strings.Fields(procField("/proc/meminfo", "MemTotal", ":") + " 0")[0], 10, 64); err == nil {
		m.Memory = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
	}
	m.OS = strings.Trim(procField("/etc/os-release", "PRETTY_NAME", "="), `"`)
	m.Kernel = firstLine(ctx, "uname", "-r")
	m.QEMU = firstLine(ctx, "qemu-system-x86_64", "--version")
	m.QemuImg = firstLine(ctx, "qemu-img", "--version")
	return m
}

// procField returns the value of the first "key<sep>value" line of a file.
func procField(path, key, sep string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, sep)
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func firstLine(ctx context.Context, name string, args ...string) string {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return "?"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
