package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/steps/fetch"
	"gitlab.com/imgform/imgform/internal/steps/smoke"
)

// BuildUserName is the account the build logs in with; cleanup removes it.
const BuildUserName = "imgform-build"

// placeholderBuildUser stands for the ephemeral build key in the seed's key: the real key is random per
// build and must not change the key (see keys.go).
var placeholderBuildUser = &config.BuildUser{Name: BuildUserName, AuthorizedKey: "ssh-ed25519 <ephemeral build key>"}

// keyContext is what computing keys needs besides the steps themselves.
type keyContext struct {
	cfg     *config.Config
	fetcher *fetch.Fetcher
	files   *fileHasher
	salt    []byte
	debug   func(*Step, string, []byte)
	// checksums caches resolved source checksums per image, so plan and apply resolve a sums file once.
	checksums map[string]string
}

// computeKey sets s.Key and s.Inputs; the steps it depends on must have their keys already.
func (kc *keyContext) computeKey(ctx context.Context, s *Step) error {
	b := newKeyBuilder(s, kc.debug)
	var err error
	switch s.Kind {
	case KindFetch:
		err = kc.fetchKey(ctx, s, b)
	case KindSeed:
		err = kc.seedKey(s, b)
	case KindBoot:
		b.addKey("step "+s.Parent.ID, s.Parent.Key)
		b.addKey("step "+s.Seed.ID, s.Seed.Key)
		m := s.Image.Machine
		err = b.addJSON("machine", struct {
			Type     string `json:"type"`
			Firmware string `json:"firmware"`
			DiskSize int64  `json:"disk_size"`
		}{m.Type, m.Firmware, int64(m.DiskSize)})
		kc.explainVars(b, m.VarRefs)
	case KindProvision:
		b.addKey("step "+s.Parent.ID, s.Parent.Key)
		err = kc.provisionKey(ctx, s, b)
	case KindCleanup:
		b.addKey("step "+s.Parent.ID, s.Parent.Key)
		c := s.Image.Cleanup
		err = b.addJSON("cleanup", struct {
			CloudInit, MachineID, SSHHostKeys, Resolved, Logs, AptLists, Trim, ZeroFreeSpace bool
		}{c.CloudInit, c.MachineID, c.SSHHostKeys, c.Resolved, c.Logs, c.AptLists, c.Trim, c.ZeroFreeSpace})
		kc.explainVars(b, c.VarRefs)
	case KindExport:
		b.addKey("step "+s.Parent.ID, s.Parent.Key)
		o := s.Output
		err = b.addJSON("output", struct {
			Format      string `json:"format"`
			Compression string `json:"compression"`
			Level       int    `json:"level"`
		}{o.Format, o.Compression, o.Level})
		kc.explainVars(b, o.VarRefs)
	case KindTest:
		b.addKey("step "+s.Parent.ID, s.Parent.Key)
		err = kc.testKey(ctx, s, b)
	default:
		err = fmt.Errorf("unknown step kind %q", s.Kind)
	}
	if err != nil {
		return err
	}
	s.Key = b.sum()
	s.Inputs = b.inputs
	return nil
}

func (kc *keyContext) fetchKey(ctx context.Context, s *Step, b *keyBuilder) error {
	src := s.Image.Source
	kc.explainVars(b, src.VarRefs)
	sum, err := kc.resolveChecksum(ctx, s.Image)
	if err != nil {
		return err
	}
	if sum != "" {
		b.add("source checksum", []byte(sum))
		return nil
	}
	if src.Path != "" {
		h, err := kc.files.Hash(ctx, kc.path(src.Path))
		if err != nil {
			return fmt.Errorf("source %s: %w", src.Path, err)
		}
		b.add("source file "+src.Path, []byte("sha256:"+h))
		return nil
	}
	// No checksum declared for a download: only the URL identifies it. The download's own sha256 is
	// recorded in the object, and `imgform cache gc` drops it like any other entry.
	b.add("source url", []byte(src.URL))
	return nil
}

// resolveChecksum gives the concrete "type:hex" checksum of an image's source, downloading only a sums
// file for "file:" checksums; "" when the source declares none.
func (kc *keyContext) resolveChecksum(ctx context.Context, img *config.Image) (string, error) {
	if sum, ok := kc.checksums[img.Name]; ok {
		return sum, nil
	}
	src := img.Source
	spec := src.Checksum
	if spec == "none" {
		spec = ""
	}
	loc := src.URL
	if loc == "" {
		loc = src.Path
	}
	sum, err := kc.fetcher.ResolveChecksum(ctx, fetch.Request{URL: loc, Checksum: spec, BaseDir: kc.cfg.Dir})
	if err != nil {
		return "", fmt.Errorf("image %q: resolving the source checksum: %w", img.Name, err)
	}
	out := ""
	if !sum.IsZero() {
		out = sum.String()
	}
	kc.checksums[img.Name] = out
	return out, nil
}

func (kc *keyContext) seedKey(s *Step, b *keyBuilder) error {
	ud, err := s.Image.RenderUserData(placeholderBuildUser)
	if err != nil {
		return fmt.Errorf("image %q: rendering user-data: %w", s.Image.Name, err)
	}
	b.add("user-data", ud)
	// The hostname is in the meta-data and cloud-init writes it to /etc/hostname, so it is part of the result.
	b.add("hostname", []byte(hostname(s.Image.Name)))
	refs := append([]string{}, s.Image.Userdata.VarRefs...)
	for _, n := range s.Image.Networks {
		refs = append(refs, n.VarRefs...)
	}
	kc.explainVars(b, refs)
	return nil
}

func (kc *keyContext) provisionKey(ctx context.Context, s *Step, b *keyBuilder) error {
	p := s.Provisioner
	type upload struct {
		Source      string `json:"source,omitempty"`
		Content     string `json:"content,omitempty"`
		HasContent  bool   `json:"has_content,omitempty"`
		Destination string `json:"destination"`
		Mode        string `json:"mode,omitempty"`
		Owner       string `json:"owner,omitempty"`
	}
	conf := struct {
		Inline      []string          `json:"inline,omitempty"`
		Script      string            `json:"script,omitempty"`
		Environment map[string]string `json:"environment,omitempty"`
		Sudo        bool              `json:"sudo"`
		Uploads     []upload          `json:"uploads,omitempty"`
	}{Inline: p.Inline, Script: p.Script, Environment: p.Environment, Sudo: p.Sudo}
	for _, u := range p.Uploads {
		conf.Uploads = append(conf.Uploads, upload{u.Source, u.Content, u.HasContent, u.Destination, u.Mode, u.Owner})
	}
	if err := b.addJSON("provisioner", conf); err != nil {
		return err
	}
	if err := kc.addFile(ctx, b, "script", p.Script); err != nil {
		return fmt.Errorf("provisioner %q: %w", p.Name, err)
	}
	for _, u := range p.Uploads {
		if err := kc.addFile(ctx, b, "file", u.Source); err != nil {
			return fmt.Errorf("provisioner %q: %w", p.Name, err)
		}
	}
	kc.explainVars(b, p.VarRefs)
	return nil
}

// testKey: the final layer (the parent's key), the machine type and firmware the instance boots with, the
// smoke_test settings with the full text of every built-in check and the test user-data (steps/smoke), and
// each test block with its script's content. Out, besides what keys.go keeps out of every key: the
// throwaway key, the instance-id and the MAC address, which are new on every run by design.
func (kc *keyContext) testKey(ctx context.Context, s *Step, b *keyBuilder) error {
	img := s.Image
	m := img.Machine
	if err := b.addJSON("machine", struct {
		Type     string `json:"type"`
		Firmware string `json:"firmware"`
	}{m.Type, m.Firmware}); err != nil {
		return err
	}
	b.add("smoke_test", []byte(smoke.KeyText(img)))
	if err := b.addJSON("smoke_test settings", struct {
		DNSQuery string `json:"dns_query,omitempty"`
	}{img.SmokeTest.DNSQuery}); err != nil {
		return err
	}
	refs := append([]string{}, img.SmokeTest.VarRefs...)
	refs = append(refs, m.VarRefs...)
	for _, t := range img.Tests {
		if err := b.addJSON("test "+t.Name, struct {
			Inline []string `json:"inline,omitempty"`
			Script string   `json:"script,omitempty"`
			Sudo   bool     `json:"sudo"`
		}{t.Inline, t.Script, t.Sudo}); err != nil {
			return err
		}
		if err := kc.addFile(ctx, b, "script", t.Script); err != nil {
			return fmt.Errorf("test %q: %w", t.Name, err)
		}
		refs = append(refs, t.VarRefs...)
	}
	kc.explainVars(b, refs)
	return nil
}

// addFile puts the content of a local file a step reads into its key as "<what> <path>" (nothing when path
// is empty): a script or an uploaded file.
func (kc *keyContext) addFile(ctx context.Context, b *keyBuilder, what, path string) error {
	if path == "" {
		return nil
	}
	h, err := kc.files.Hash(ctx, kc.path(path))
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	b.add(what+" "+path, []byte("sha256:"+h))
	return nil
}

// explainVars records the digests of the variables a step reads (keyed for sensitive ones).
func (kc *keyContext) explainVars(b *keyBuilder, names []string) {
	seen := map[string]bool{}
	sorted := append([]string{}, names...)
	sort.Strings(sorted)
	for _, n := range sorted {
		v := kc.cfg.Variables[n]
		if v == nil || seen[n] {
			continue
		}
		seen[n] = true
		data, err := json.Marshal(ctyJSON{v})
		if err != nil {
			continue
		}
		dig := digest(data)
		if v.Sensitive {
			dig = keyedDigest(kc.salt, data)
		}
		b.explain("variable "+n, dig)
	}
}

func (kc *keyContext) path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(kc.cfg.Dir, p)
}
