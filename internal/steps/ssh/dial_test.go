package ssh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestDial(t *testing.T) {
	key := mustKey(t)
	srv := newTestServer(t, key)
	other := mustKey(t)
	consoleWith := func(t *testing.T, text string) string {
		p := filepath.Join(t.TempDir(), "serial.log")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srvFP := ssh.FingerprintSHA256(srv.hostKey.PublicKey())
	keygen := "[  301.7] cloud-init[451]: The key fingerprint is:\r\n[  301.7] cloud-init[451]: " + srvFP + " root@x\r\n"
	cases := map[string]struct {
		hostKeys func(t *testing.T) *HostKeys
		key      *Key
		// announce is written to the console file after the first failed attempt, if set.
		announce string
		wantErr  func(error) bool
	}{
		"pinned key": {hostKeys: func(*testing.T) *HostKeys { return srv.pin() }, key: key},
		"wrong pinned key is refused at once": {
			hostKeys: func(*testing.T) *HostKeys { return PinKeys(other.PublicKey()) }, key: key,
			wantErr: func(err error) bool { var m *HostKeyMismatchError; return errors.As(err, &m) },
		},
		"key from ssh-keygen's fingerprint on the console": {
			hostKeys: func(t *testing.T) *HostKeys { return PinConsole(consoleWith(t, keygen)) }, key: key,
		},
		"waits until the console announces the key": {
			hostKeys: func(t *testing.T) *HostKeys { return PinConsole(consoleWith(t, "booting\n")) }, key: key,
			announce: keygen,
		},
		"complete console block without the key is a mismatch": {
			hostKeys: func(t *testing.T) *HostKeys { return PinConsole(consoleWith(t, firstBoot(t))) }, key: key,
			wantErr: func(err error) bool { var m *HostKeyMismatchError; return errors.As(err, &m) },
		},
		"unknown client key retries until the deadline": {
			hostKeys: func(*testing.T) *HostKeys { return srv.pin() }, key: other,
			wantErr: func(err error) bool {
				var d *DialError
				return errors.As(err, &d) && errors.Is(err, context.DeadlineExceeded) &&
					strings.Contains(err.Error(), "unable to authenticate")
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			hk := tc.hostKeys(t)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			if tc.wantErr == nil || tc.announce != "" {
				cancel()
				ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
			}
			defer cancel()
			var once sync.Once
			logf := func(format string, args ...any) {
				msg := fmt.Sprintf(format, args...)
				if tc.announce != "" && strings.Contains(msg, ErrHostKeyPending.Error()) {
					once.Do(func() {
						if err := os.WriteFile(hk.consolePath, []byte(tc.announce), 0o600); err != nil {
							t.Error(err)
						}
					})
				}
			}
			c, err := Dial(ctx, srv.addr, "builder", tc.key, hk.Callback(), WithHostKeys(hk), WithLogf(logf))
			if tc.wantErr != nil {
				if err == nil {
					_ = c.Close()
					t.Fatal("Dial succeeded")
				}
				if !tc.wantErr(err) {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := c.Close(); err != nil {
					t.Error(err)
				}
			}()
			if acc := hk.Accepted(); len(acc) != 1 || !keysEqual(acc[0], srv.hostKey.PublicKey()) {
				t.Errorf("Accepted = %v, want the server's key", acc)
			}
		})
	}
}

// TestDialNothingListens dials a port where nothing listens: Dial keeps trying until the deadline, then
// says so with the tail of the serial console.
func TestDialNothingListens(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	tail := "[   95.6] input: Power Button\n[  123.0] kvm: Nested Virtualization enabled"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = Dial(ctx, addr, "builder", mustKey(t), PinKeys().Callback(), WithConsoleTail(func() string { return tail }))
	var d *DialError
	if !errors.As(err, &d) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial = %v, want a *DialError after the deadline", err)
	}
	for _, want := range []string{"no login as builder@" + addr, "connection refused", "serial console", tail} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if d.Attempts < 2 || d.Attempts > 6 {
		t.Errorf("%d attempts in 2 s, want retries 0.5 s, 1 s, 2 s apart", d.Attempts)
	}

	// A resumed guest's login retries every few hundredths of a second instead.
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = Dial(ctx, addr, "builder", mustKey(t), PinKeys().Callback(), WithRetry(time.Second, 10*time.Millisecond, 20*time.Millisecond))
	if !errors.As(err, &d) || d.Attempts < 20 {
		t.Errorf("Dial with WithRetry = %v, want more than 20 attempts in 2 s", err)
	}
}

func mustKey(t *testing.T) *Key {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
