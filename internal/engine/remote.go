package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"gitlab.com/imgform/imgform/internal/fsutil"
	"gitlab.com/imgform/imgform/internal/remote"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
)

// The remote cache (Engine.Remote, internal/remote): plan looks up in it every step the store lacks; apply
// pulls what the plan counts on before anything runs, and pushes each new result in the background as soon
// as it is committed. A step's output file travels as an object of the store too (outputObjectFile), so a
// runner whose configuration is fully cached remotely downloads its outputs, not the layers below them.

// outputObjectFile is the name of an output's file in the object that carries it to and from a remote.
const outputObjectFile = "output"

// RemoteHit says that a step's result comes from the remote cache: Size bytes to download.
type RemoteHit struct {
	Size int64 `json:"size"`
}

// lookupRemote asks the remote, in parallel, for every step the store lacks and, for an apply that may push
// (pushing), for the ones it has: those the remote lacks (a push that failed last time, a build made without the
// remote) are pushed by this apply. A remote that cannot answer is a warning: the plan is then that of a
// build without it, except a refusal of the credentials: that needs the user, not a silent full build.
func (e *Engine) lookupRemote(ctx context.Context, p *planned, pushing bool) error {
	var keys []state.Key
	for _, s := range p.graph.Steps {
		if !p.skipped[s] && (!p.present[s] || pushing) {
			keys = append(keys, s.Key)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	hits, err := e.Remote.StatMany(ctx, keys)
	if errors.Is(err, remote.ErrUnauthorized) {
		return err
	}
	if err != nil {
		e.hooks().Message(LevelWarn, fmt.Sprintf("%v; planning without the remote cache", err))
		return nil
	}
	for _, s := range p.graph.Steps {
		h, ok := hits[s.Key]
		switch {
		case p.skipped[s]:
		case ok && !p.present[s]:
			p.remote[s] = h
		case !ok && p.present[s] && pushing:
			p.unpushed[s] = true
		}
	}
	return nil
}

// pullAll downloads what the plan takes from the remote, a few at a time, then plans again: a pulled step
// is cached, a pulled output is restored from the store, and a pull that failed is built instead (with a
// warning), which may need other results, pulled in the next round.
func (a *applier) pullAll(ctx context.Context) {
	for round := 0; round < len(a.p.graph.Steps) && ctx.Err() == nil; round++ {
		var steps []*step.Step
		for _, s := range a.p.graph.Steps {
			if a.p.pull[s] {
				steps = append(steps, s)
			}
		}
		if len(steps) == 0 {
			return
		}
		var wg sync.WaitGroup
		sem := make(chan struct{}, 2)
		for _, s := range steps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				a.pullOne(ctx, s)
			}()
		}
		wg.Wait()
		a.e.decide(ctx, a.cfg, a.p)
	}
}

func (a *applier) pullOne(ctx context.Context, s *step.Step) {
	a.start(s)
	lock, err := a.e.Store.LockKey(ctx, s.Key, a.lockOptions(fmt.Sprintf("pull of %s of image %s", s.Label(), s.Image.Name)))
	if err == nil {
		_, err = a.e.Remote.Pull(ctx, a.e.Store, s.Key)
		_ = lock.Unlock()
	}
	a.mu.Lock()
	if err != nil {
		a.p.pullFailed[s] = err
	} else {
		a.p.pulled[s] = true
		if _, file := s.Kind.(step.FileKind); !file {
			a.p.present[s] = true
		} else {
			a.p.restorable[s] = true
		}
	}
	a.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			a.e.hooks().Message(LevelWarn, fmt.Sprintf("could not pull %s of image %q from the remote cache (%v); building it instead",
				s.Label(), s.Image.Name, a.cfg.RedactError(err)))
		}
		a.finish(s, StatusSkipped, errors.New("the pull failed; built instead"))
		return
	}
	a.finish(s, StatusPulled, nil)
}

// restoreOutput writes a FileKind step's output from its object in the store (pulled from the remote, or
// kept by an earlier push), atomically and checked against the object's sha256, instead of running it.
func (a *applier) restoreOutput(ctx context.Context, s *step.Step) error {
	a.start(s)
	err := func() error {
		obj, ok, err := a.e.Store.Lookup(s.Key)
		if err != nil || !ok {
			return errors.Join(errors.New("its output is no longer in the store"), err)
		}
		sum, ok := obj.File(outputObjectFile)
		if !ok {
			return fmt.Errorf("the stored output %s has no file %q", s.Key.Short(), outputObjectFile)
		}
		fk := s.Kind.(step.FileKind)
		dest := outputPath(a.cfg, fk.OutputFile(s))
		r, err := obj.Open(outputObjectFile)
		if err != nil {
			return err
		}
		defer func() { _ = r.Close() }()
		// The reader fails at the end when the content does not match the object's sha256: the output is
		// then never published.
		if err := writeAtomic(dest, r); err != nil {
			return err
		}
		fi, err := os.Stat(dest)
		if err != nil {
			return err
		}
		out := &state.OutputRecord{Name: s.Addr.Name, Path: fk.OutputFile(s), SHA256: sum.SHA256, Size: fi.Size(), ModTime: fi.ModTime(), Key: s.Key}
		a.mu.Lock()
		a.result(s).output = out
		a.mu.Unlock()
		return nil
	}()
	if err != nil {
		err = fmt.Errorf("restoring %s from the cache: %w", s.Label(), err)
		a.finish(s, StatusFailed, err)
		return err
	}
	a.finish(s, StatusRestored, nil)
	return nil
}

// pusher uploads new results to the remote in the background, one at a time, while the apply goes on.
type pusher struct {
	a       *applier
	queue   chan *step.Step
	done    chan struct{}
	mu      sync.Mutex
	pushed  int
	failed  []string
	objects int
}

func (a *applier) startPusher(ctx context.Context) {
	if a.e.Remote == nil || a.e.Remote.Mode() != remote.ReadWrite {
		return
	}
	p := &pusher{a: a, queue: make(chan *step.Step, 1024), done: make(chan struct{})}
	a.pushes = p
	go func() {
		defer close(p.done)
		for s := range p.queue {
			p.push(ctx, s)
		}
	}()
	for _, s := range a.p.graph.Steps {
		if a.p.unpushed[s] {
			p.add(s)
		}
	}
}

// add queues a step that finished with a new result.
func (p *pusher) add(s *step.Step) {
	if p == nil {
		return
	}
	p.queue <- s
}

// wait lets the queued pushes finish and says what they did.
func (p *pusher) wait() {
	if p == nil {
		return
	}
	close(p.queue)
	<-p.done
	h := p.a.e.hooks()
	if p.pushed > 0 || len(p.failed) > 0 {
		h.Message(LevelInfo, fmt.Sprintf("remote cache %s: pushed %d result(s) (%d object(s) uploaded)", p.a.e.Remote.Ref(), p.pushed, p.objects))
	}
	for _, f := range p.failed {
		h.Message(LevelWarn, f)
	}
}

func (p *pusher) push(ctx context.Context, s *step.Step) {
	a := p.a
	obj, err := a.objectToPush(ctx, s)
	if err == nil && obj != nil {
		var rep remote.PushReport
		rep, err = a.e.Remote.Push(ctx, a.e.Store, obj, nil)
		p.mu.Lock()
		p.objects += len(rep.Pushed)
		p.mu.Unlock()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.failed = append(p.failed, fmt.Sprintf("could not push %s of image %q to the remote cache (the build is fine; the next apply pushes it): %v",
			s.Label(), s.Image.Name, a.cfg.RedactError(err)))
		return
	}
	if obj != nil {
		p.pushed++
	}
}

// objectToPush is the store object of a step's new result. For an output file that is a new object holding
// a copy of the file (not a hard link: the store makes its files read-only, and a user's later edit of the
// output must not change the cache), checked against the digest the step wrote it with.
func (a *applier) objectToPush(ctx context.Context, s *step.Step) (*state.Object, error) {
	if _, file := s.Kind.(step.FileKind); !file {
		obj, ok, err := a.e.Store.Lookup(s.Key)
		if err != nil || !ok {
			return nil, err
		}
		return obj, nil
	}
	out := a.currentOutput(s)
	if out == nil {
		return nil, nil
	}
	if obj, ok, err := a.e.Store.Lookup(s.Key); err != nil || ok {
		return obj, err
	}
	w, err := a.e.Store.Begin(s.Key, state.Info{Kind: s.Addr.Kind, Image: s.Image.Name, Step: s.Addr.ID(),
		Attrs: map[string]string{"path": out.Path}})
	if err != nil {
		return nil, err
	}
	if err := copyChecked(ctx, outputPath(a.cfg, out.Path), w, out.SHA256); err != nil {
		return nil, errors.Join(fmt.Errorf("output %s: %w", out.Path, err), w.Abort())
	}
	return w.Commit()
}

// copyChecked copies src into the writer's output file and fails when its sha256 is not want.
func copyChecked(ctx context.Context, src string, w *state.Writer, want string) error {
	dst, err := w.Path(outputObjectFile)
	if err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	sum, _, err := fsutil.Hash(ctx, io.TeeReader(in, f))
	if err = errors.Join(err, f.Close()); err != nil {
		return err
	}
	if sum != want {
		return fmt.Errorf("changed after it was written (sha256 %s, written as %s)", sum, want)
	}
	return nil
}
