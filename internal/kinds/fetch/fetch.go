// Package fetch is the step kind that brings an image's source disk into the store: downloaded or copied
// through internal/steps/fetch, checked against its checksum, and inspected with qemu-img.
package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
	fetchlib "gitlab.com/imgform/imgform/internal/steps/fetch"
	"gitlab.com/imgform/imgform/internal/steps/qemu"
)

// Kind is the fetch kind.
type Kind struct{}

var (
	_ step.HostKind  = Kind{}
	_ step.DiskKind  = Kind{}
	_ step.Explainer = Kind{}
)

func (Kind) Name() string      { return "fetch" }
func (Kind) Version() int      { return 1 }
func (Kind) Class() step.Class { return step.Source }

// Instances: one fetch per image, none for an image derived from another (it starts from its parent's result).
func (Kind) Instances(img *config.Image) []step.Instance {
	if img.Source.Image != "" {
		return nil
	}
	return []step.Instance{{}}
}

// The source's file in the object, and what it is, kept next to it so later steps need not ask qemu-img.
const (
	sourceFile     = "disk"
	sourceInfoFile = "disk.json"
)

type sourceInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual_size"`
	Checksum    string `json:"checksum"`
}

// Key: the source's checksum, never its URL (a mirror or local copy of the same image hits the same
// entry); the file's content for a local source without one; the URL only for a download without one
// (its own sha256 is recorded in the object, and `imgform cache gc` drops it like any other entry).
func (Kind) Key(ctx context.Context, kc *step.KeyContext, s *step.Step, b *step.KeyBuilder) error {
	src := s.Image.Source
	b.Variables(src.VarRefs)
	sum, err := resolveChecksum(ctx, kc, s.Image)
	if err != nil {
		return err
	}
	switch {
	case sum != "":
		b.Add(step.InputSource, "source checksum", []byte(sum))
	case src.Path != "":
		h, err := kc.HashFile(ctx, src.Path)
		if err != nil {
			return fmt.Errorf("source %s: %w", src.Path, err)
		}
		b.Add(step.InputSource, "source file "+src.Path, []byte("sha256:"+h))
	default:
		b.Add(step.InputSource, "source url", []byte(src.URL))
	}
	return nil
}

// Explain words the source's inputs.
func (Kind) Explain(in step.Input) string {
	switch in.Name {
	case "source checksum":
		return "the source image changed (new checksum)"
	case "source url":
		return "the source url changed"
	}
	if in.Type == step.InputSource {
		return fmt.Sprintf("the %s changed", in.Name)
	}
	return ""
}

// resolveChecksum gives the concrete "type:hex" checksum of an image's source, downloading only a sums
// file for "file:" checksums; "" when the source declares none. It is resolved once per plan, and warns
// then about a weak checksum (md5, sha1) or a sums file whose PGP signature is not checked.
func resolveChecksum(ctx context.Context, kc *step.KeyContext, img *config.Image) (string, error) {
	if sum, ok := kc.Shared.SourceChecksum(img.Name); ok {
		return sum, nil
	}
	src := img.Source
	spec := src.Checksum
	if spec == "none" {
		spec = ""
	}
	sum, err := (&fetchlib.Fetcher{}).ResolveChecksum(ctx, fetchlib.Request{URL: location(img), Checksum: spec, BaseDir: kc.Config.Dir,
		Warn: func(text string) { kc.Warnf("image %q: %s", img.Name, text) }})
	if err != nil {
		return "", fmt.Errorf("image %q: resolving the source checksum: %w", img.Name, err)
	}
	out := ""
	if !sum.IsZero() {
		out = sum.String()
	}
	kc.Shared.SetSourceChecksum(img.Name, out)
	if sum.Type.Weak() { // once per image: the next call finds the checksum in kc.Shared
		from := ""
		if typ, ref, ok := strings.Cut(strings.TrimSpace(spec), ":"); ok && strings.EqualFold(typ, "file") {
			from = ", the strongest that " + fetchlib.Redact(ref) + " lists for it"
		}
		kc.Warnf("image %q: the source checksum is %s%s: %s is broken (files with the same digest can be made), so it catches a damaged download but not an image replaced by a hostile mirror; give a sha256 or sha512 checksum if the publisher has one",
			img.Name, sum.Type, from, sum.Type)
	}
	return out, nil
}

func location(img *config.Image) string {
	if img.Source.URL != "" {
		return img.Source.URL
	}
	return img.Source.Path
}

// Run downloads (or copies) the source into the store and checks that it is a disk image that fits the
// machine's disk_size.
func (Kind) Run(ctx context.Context, env *step.Env, s *step.Step) (step.Result, error) {
	img := s.Image
	loc := location(img)
	sum, _ := env.Shared.SourceChecksum(img.Name)
	keyedContent := false
	if sum == "" && img.Source.Path != "" {
		// Keyed by its content at plan time: the copy must have that content, or a file edited meanwhile
		// would be stored under the old content's key.
		if h, ok := env.Shared.FileDigest(env.Path(img.Source.Path)); ok {
			sum, keyedContent = "sha256:"+h, true
		}
	}
	_, built, err := env.Store.GetOrBuild(ctx, s.Key, state.Info{Kind: s.Addr.Kind, Image: img.Name, Step: s.Addr.ID()},
		env.LockOptions(fmt.Sprintf("fetch of image %s", img.Name)),
		func(ctx context.Context, w *state.Writer) error {
			dest, err := w.Path(sourceFile)
			if err != nil {
				return err
			}
			res, err := (&fetchlib.Fetcher{}).Fetch(ctx, fetchlib.Request{
				URL: loc, Checksum: sum, BaseDir: env.Config.Dir, Dest: dest,
				Progress: func(done, total int64) { env.Progress("download", done, total) },
			})
			var mismatch *fetchlib.MismatchError
			if keyedContent && errors.As(err, &mismatch) {
				return fmt.Errorf("source %s changed while imgform ran (%s when planned, %s when copied): it would be stored under the old content's key; run apply again", img.Source.Path, mismatch.Expected, mismatch.Actual)
			}
			if err != nil {
				return err
			}
			info, err := inspectDisk(ctx, dest)
			if err != nil {
				return fmt.Errorf("source %s: %w", loc, err)
			}
			if ds := int64(img.Machine.DiskSize); ds != 0 && ds < info.VirtualSize {
				return step.ConfigErrorf(img.Machine.DiskSizeRange, "disk_size %s is smaller than the source image's virtual size of %d bytes (%s); shrinking would destroy data: set disk_size to at least that",
					img.Machine.DiskSize, info.VirtualSize, loc)
			}
			meta, err := json.Marshal(sourceInfo{Format: info.Format, VirtualSize: info.VirtualSize, Checksum: res.Checksum.String()})
			if err != nil {
				return err
			}
			return w.WriteFile(sourceInfoFile, meta, 0o644)
		})
	return step.Result{Built: built}, err
}

// Disk returns the source disk of a fetch object, in the format it came in.
func (Kind) Disk(obj *state.Object) (step.Disk, error) {
	b, err := os.ReadFile(obj.Path(sourceInfoFile))
	if err != nil {
		return step.Disk{}, err
	}
	var si sourceInfo
	if err := json.Unmarshal(b, &si); err != nil {
		return step.Disk{}, fmt.Errorf("%s: %w", obj.Path(sourceInfoFile), err)
	}
	// A source fetched before imgform checked sources may still name a host file: check again before use.
	if err := qemu.CheckStandalone(obj.Path(sourceFile), si.Format); err != nil {
		return step.Disk{}, fmt.Errorf("the cached source %s: %w; remove it with imgform cache gc", obj.Key.Short(), err)
	}
	return step.Disk{Path: obj.Path(sourceFile), Format: si.Format}, nil
}
