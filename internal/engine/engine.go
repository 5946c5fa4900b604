package engine

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/fsutil"
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
	// SkipTests leaves the steps that verify images (the tests) out of plan and apply (apply -skip-tests);
	// outputs are then marked unverified in SHA256SUMS and the manifests.
	SkipTests bool
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
	p, err := e.makePlan(ctx, cfg)
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
	kc := &step.KeyContext{Config: cfg, Files: step.OpenFileHasher(e.Store.Dir()), Salt: salt, Shared: &step.Shared{}}
	if e.DebugKeys {
		kc.Debug = func(s *step.Step, name string, data []byte) {
			shown := string(data)
			if len(shown) > 200 || !printable(shown) {
				shown = fmt.Sprintf("(%d bytes)", len(data))
			}
			e.hooks().Message(LevelDebug, cfg.Redact(fmt.Sprintf("key %s: %s = %s [%s]", s.Addr.ID(), name, shown, step.Digest(data))))
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

// salt is a random secret of this store, for keyed digests of sensitive values in records.
func (e *Engine) salt() ([]byte, error) {
	path := filepath.Join(e.Store.Dir(), "salt")
	if b, err := os.ReadFile(path); err == nil && len(b) == 32 {
		return b, nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("writing the store's salt: %w", err)
	}
	// Two processes may race here; read back so both use the same salt.
	return os.ReadFile(path)
}
