package qemu

import (
	"context"
	"errors"
	"time"
)

// How SettleMemory waits. The guest reports free memory 2 s after it was freed (the kernel's
// PAGE_REPORTING_DELAY), then in rounds 2 s apart, each a part of the free lists: 650 MB freed by dropping
// the caches of an upgraded 1 GiB guest take a few rounds.
const (
	settleFirst = 2500 * time.Millisecond // the first round has run by then
	settlePoll  = 250 * time.Millisecond
	settleQuiet = 2250 * time.Millisecond // longer than the gap between two rounds
	settleMax   = 10 * time.Second
	settleSlack = 1 << 20 // bytes: a change smaller than this is noise (QEMU's own allocations)
)

// SettleMemory waits until the guest has handed back the memory it freed (free page reporting, see the
// balloon device in command.go), so that a state saved next holds its free pages as zero pages: until
// QEMU's resident memory has not shrunk for settleQuiet, at least settleFirst and at most settleMax. Where
// the resident memory cannot be read (no /proc), it waits settleFirst.
func (vm *VM) SettleMemory(ctx context.Context) (freed int64, waited time.Duration, err error) {
	start := time.Now()
	first, rerr := residentBytes(vm.PID())
	last, lastDrop := first, start
	t := time.NewTicker(settlePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return first - last, time.Since(start), ctx.Err()
		case <-vm.Exited():
			return first - last, time.Since(start), errors.New("qemu: QEMU exited while the guest returned its free memory")
		case now := <-t.C:
			if rerr != nil {
				if now.Sub(start) >= settleFirst {
					return 0, now.Sub(start), nil
				}
				continue
			}
			cur, err := residentBytes(vm.PID())
			if err != nil {
				return first - last, now.Sub(start), nil
			}
			if last-cur > settleSlack {
				lastDrop = now
			}
			last = min(last, cur)
			if (now.Sub(start) >= settleFirst && now.Sub(lastDrop) >= settleQuiet) || now.Sub(start) >= settleMax {
				return first - last, now.Sub(start), nil
			}
		}
	}
}
