package ssh

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"
)

// CloudInitError says cloud-init finished with an error, or did not run at all.
type CloudInitError struct {
	Status   string // "error", "disabled", ...
	ExitCode int    // of cloud-init status --wait
	Long     string // the output of cloud-init status --long
	LogTail  string // the last lines of /var/log/cloud-init-output.log and cloud-init's warnings
}

func (e *CloudInitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cloud-init finished with status %q (cloud-init status --wait exited %d)", e.Status, e.ExitCode)
	if s := strings.TrimSpace(e.Long); s != "" {
		fmt.Fprintf(&b, "\ncloud-init status --long:\n%s", s)
	}
	if s := strings.TrimSpace(e.LogTail); s != "" {
		fmt.Fprintf(&b, "\n%s", s)
	}
	return b.String()
}

// cloudInitLogs prints the end of cloud-init's output log (what modules and runcmd printed) and the
// warnings of its own log, which name the module that failed. The logs may be readable by root only.
const cloudInitLogs = `show() { sudo -n -- "$@" 2>/dev/null || "$@" 2>/dev/null; }
echo "--- /var/log/cloud-init-output.log (last 40 lines) ---"
show tail -n 40 /var/log/cloud-init-output.log
echo "--- /var/log/cloud-init.log (last 20 warnings and errors) ---"
show grep -E 'WARNING|ERROR|Traceback|Failed' /var/log/cloud-init.log | tail -n 20`

// WaitCloudInit waits until cloud-init has finished in the guest and returns its status. It runs
// "cloud-init status --wait" (reconnecting when the guest drops the connection, which happens when
// cloud-init restarts sshd), then "cloud-init status --long".
//
// The status decides:
//   - "done": success.
//   - "degraded done" (cloud-init 23.4 and later, exit code 2): finished with recoverable errors, such as a
//     deprecated key; cloud-init's documentation counts this as a run that completed, so it is success and
//     the caller should warn.
//   - "error" (22.4 exits 1 here, for example after a failed runcmd): a *CloudInitError with the --long
//     output and the end of the logs.
//   - "disabled" or anything else: a *CloudInitError, as the build relies on cloud-init having run.
func WaitCloudInit(ctx context.Context, client *Client) (string, error) {
	var waitErr bytes.Buffer
	code, err := client.Run(ctx, "cloud-init status --wait >/dev/null", RunOptions{Idempotent: true, Stderr: &waitErr})
	if err != nil {
		return "", fmt.Errorf("cloud-init status --wait: %w", err)
	}
	long, _, err := client.Output(ctx, "cloud-init status --long", RunOptions{Idempotent: true})
	if err != nil {
		return "", fmt.Errorf("cloud-init status --long: %w", err)
	}
	status, extended := parseStatus(string(long))
	if status == "" {
		return "", fmt.Errorf("cloud-init status --wait: exit code %d, no status in %q: %s", code,
			strings.TrimSpace(string(long)), strings.TrimSpace(waitErr.String()))
	}
	switch {
	case status == "done" && (code == 0 || code == 2):
		if code == 2 || strings.HasPrefix(extended, "degraded") {
			return "degraded done", nil
		}
		return "done", nil
	case status == "done":
		// Exit code 1 with status done: an error the status does not show; report it like an error.
		status = "done with exit code " + fmt.Sprint(code)
	}
	logs, _, lerr := client.Output(ctx, cloudInitLogs, RunOptions{Idempotent: true})
	e := &CloudInitError{Status: status, ExitCode: code, Long: string(long), LogTail: string(logs)}
	if lerr != nil {
		e.LogTail = fmt.Sprintf("(could not read the logs: %v)", lerr)
	}
	return status, e
}

// parseStatus reads "status:" and, from cloud-init 23.4 on, "extended_status:" out of status --long.
func parseStatus(long string) (status, extended string) {
	sc := bufio.NewScanner(strings.NewReader(long))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "status":
			status = strings.TrimSpace(v)
		case "extended_status":
			extended = strings.TrimSpace(v)
		}
	}
	return status, extended
}
