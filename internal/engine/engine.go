package engine

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/fsutil"
	"gitlab.com/imgform/imgform/internal/remote"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
)

// Engine plans and applies configurations against one store.
type Engine struct {
	Store *state.Store
	// Hooks receives events; nil means NoHooks.
	Hooks Hooks
	// Kinds are the step kinds an image runs, in order (internal/kinds.All).
	Kinds []step.Kind
	// Machines runs the guest sessions and the tests' instances. Plan works without it.
	Machines step.Machines
	// Remote is the shared cache on an OCI registry (internal/remote); nil means none. Plan looks up in it
	// what the store lacks, apply pulls what it needs and, in read-write mode, pushes what it builds.
	Remote *remote.Cache
	// PublishOptions are the registry options (credentials, CA, plain HTTP) for outputs with publish
	// references; Mode and Version are ignored.
	PublishOptions remote.Options
	// SkipTests leaves the steps that verify images (the tests) out of plan and apply (apply -skip-tests);
	// outputs are then marked unverified in SHA256SUMS and the manifests.
	SkipTests bool
	// KeepOnError keeps a failed guest session's VM running until the apply is cancelled, with a way to
	// log in (apply -on-error=keep).
	KeepOnError bool
	// Only and Except choose images by name or glob (path.Match), as -only and -except; the images a chosen
	// one derives from are planned too. Empty means all.
	Only, Except []string
	// Replace names steps by address ("image.kind.name") that apply builds again although their keys are
	// cached, with everything after them (-replace).
	Replace []string
	// Parallelism bounds the steps that run at once; 0 means 2.
	Parallelism int
	// DebugKeys logs every input hashed into each key (IMGFORM_DEBUG_KEYS=1).
	DebugKeys bool
	// ToolVersion goes into manifests.
	ToolVersion string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DebugKeysFromEnv reads IMGFORM_DEBUG_KEYS.
func DebugKeysFromEnv() bool {
	v, _ := strconv.ParseBool(os.Getenv("IMGFORM_DEBUG_KEYS"))
	return v
}

func (e *Engine) hooks() Hooks {
	if e.Hooks == nil {
		return NoHooks{}
	}
	return e.Hooks
}

func (e *Engine) now() time.Time {
	if e.Now == nil {
		return time.Now()
	}
	return e.Now()
}

// Plan computes what apply would do and why, without running anything.
func (e *Engine) Plan(ctx context.Context, cfg *config.Config) (*Plan, error) {
	p, err := e.makePlan(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	return p.plan, nil
}

func (e *Engine) keyContext(cfg *config.Config) (*step.KeyContext, error) {
	salt, err := e.salt()
	if err != nil {
		return nil, err
	}
	kc := &step.KeyContext{Config: cfg, Files: step.OpenFileHasher(e.Store.Dir()), Salt: salt, Shared: &step.Shared{},
		Warn: func(text string) { e.hooks().Message(LevelWarn, cfg.Redact(text)) }}
	if e.DebugKeys {
		kc.Debug = func(s *step.Step, name string, data []byte, digest string) {
			shown := string(data)
			switch {
			case data == nil:
				shown = "(sensitive)"
			case len(shown) > 200 || !printable(shown):
				shown = fmt.Sprintf("(%d bytes)", len(data))
			}
			e.hooks().Message(LevelDebug, cfg.Redact(fmt.Sprintf("key %s: %s = %s [%s]", s.Addr.ID(), name, shown, digest)))
		}
	}
	return kc, nil
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 && r != '\t' {
			return false
		}
	}
	return true
}

// KeySecretEnv names the variable that holds a key secret shared by several machines (a CI variable), so
// that their stores give the same keys for steps with sensitive values; without it each store has its own.
const KeySecretEnv = "IMGFORM_KEY_SECRET"

// salt is the key secret: sensitive values enter keys, records and debug output only as HMACs under it
// (internal/step/key.go). It is the store's own random secret, or one derived from IMGFORM_KEY_SECRET.
func (e *Engine) salt() ([]byte, error) {
	if shared := os.Getenv(KeySecretEnv); shared != "" {
		if len(shared) < 16 {
			return nil, fmt.Errorf("%s is %d characters long: use a random secret of at least 16 (for example openssl rand -hex 32)", KeySecretEnv, len(shared))
		}
		sum := sha256.Sum256([]byte("imgform key secret v1\x00" + shared))
		return sum[:], nil
	}
	path := filepath.Join(e.Store.Dir(), "salt")
	if b, err := os.ReadFile(path); err == nil && len(b) == 32 {
		return b, nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	// Two first applies on a new store may race here: the first salt written wins (a rename would let the
	// second replace the one the first has already keyed with), and both read it back.
	if err := fsutil.WriteFileOnce(path, b, 0o600); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("writing the store's salt: %w", err)
	}
	b, err := os.ReadFile(path)
	if err == nil && len(b) != 32 {
		err = fmt.Errorf("%s holds %d bytes, not 32: remove it (keys of steps with sensitive values change once)", path, len(b))
	}
	return b, err
}
