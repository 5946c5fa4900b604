package config

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/textproto"
	"sort"
	"strings"

	ctyyaml "github.com/zclconf/go-cty-yaml"
	"github.com/zclconf/go-cty/cty"
	"go.yaml.in/yaml/v3"
)

// BuildUser is the account imgform adds to the user-data of the build boot only: cloud-init creates it with
// the ephemeral public key, and cleanup removes it again.
type BuildUser struct {
	Name          string
	AuthorizedKey string // one line, "ssh-ed25519 AAAA... comment"
}

// Paths in the guest that imgform writes through cloud-init.
const (
	NetworkUnitDir          = "/etc/systemd/network"
	DisableNetworkConfigCfg = "/etc/cloud/cloud.cfg.d/99-imgform-disable-network-config.cfg"
)

// parseCloudConfigYAML reads a cloud-config document given as text.
func parseCloudConfigYAML(src string) (cty.Value, error) {
	ty, err := ctyyaml.Standard.ImpliedType([]byte(src))
	if err != nil {
		return cty.NilVal, fmt.Errorf("cannot parse it as YAML: %w", err)
	}
	v, err := ctyyaml.Standard.Unmarshal([]byte(src), ty)
	if err != nil {
		return cty.NilVal, fmt.Errorf("cannot parse it as YAML: %w", err)
	}
	if !v.Type().IsObjectType() && !v.Type().IsMapType() {
		return cty.NilVal, fmt.Errorf("a cloud-config document must be a mapping of keys such as packages, users, runcmd")
	}
	return v, nil
}

// checkCloudConfigValue refuses values YAML cannot carry meaningfully.
func checkCloudConfigValue(v cty.Value) error {
	return cty.Walk(v, func(p cty.Path, v cty.Value) (bool, error) {
		if !v.IsKnown() {
			return false, fmt.Errorf("%s has no known value", formatPath(p))
		}
		return true, nil
	})
}

func formatPath(p cty.Path) string {
	var sb strings.Builder
	for _, step := range p {
		switch s := step.(type) {
		case cty.GetAttrStep:
			sb.WriteString("." + s.Name)
		case cty.IndexStep:
			if s.Key.Type() == cty.String {
				sb.WriteString("." + s.Key.AsString())
			} else {
				sb.WriteString("[" + s.Key.AsBigFloat().Text('f', -1) + "]")
			}
		}
	}
	return strings.TrimPrefix(sb.String(), ".")
}

// RenderUserData returns the user-data of the build boot: the user's cloud-config with the networkd units
// as write_files, cloud-init's own network configuration disabled when units are given, and the build user
// when build is not nil. Raw user-data that is not a cloud-config document is sent alongside in a MIME
// multipart archive, which cloud-init takes apart.
func (img *Image) RenderUserData(build *BuildUser) ([]byte, error) {
	cc := map[string]cty.Value{}
	if img.Userdata.CloudConfig != cty.NilVal {
		for it := img.Userdata.CloudConfig.ElementIterator(); it.Next(); {
			k, v := it.Element()
			cc[k.AsString()] = v
		}
	}
	raw := img.Userdata.Raw
	if strings.HasPrefix(raw, "#cloud-config") {
		extra, err := parseCloudConfigYAML(raw)
		if err != nil {
			return nil, fmt.Errorf("userdata content: %w", err)
		}
		for it := extra.ElementIterator(); it.Next(); {
			k, v := it.Element()
			if _, dup := cc[k.AsString()]; dup {
				return nil, fmt.Errorf("userdata: %q is set both in cloud_config and in content; keep one", k.AsString())
			}
			cc[k.AsString()] = v
		}
		raw = ""
	}

	if len(img.Networks) > 0 {
		var files []cty.Value
		for _, n := range img.Networks {
			text, err := n.Render()
			if err != nil {
				return nil, err
			}
			files = append(files, writeFile(NetworkUnitDir+"/"+n.FileName(), string(text), "0644"))
		}
		// cloud-init reads this on every later boot of the image and leaves the network to networkd.
		files = append(files, writeFile(DisableNetworkConfigCfg, "network: {config: disabled}\n", "0644"))
		cc["write_files"] = appendTuple(cc["write_files"], files...)
	}

	if build != nil {
		user := cty.ObjectVal(map[string]cty.Value{
			"name":                cty.StringVal(build.Name),
			"gecos":               cty.StringVal("imgform build user (removed by cleanup)"),
			"shell":               cty.StringVal("/bin/bash"),
			"lock_passwd":         cty.True,
			"sudo":                cty.StringVal("ALL=(ALL) NOPASSWD:ALL"),
			"ssh_authorized_keys": cty.TupleVal([]cty.Value{cty.StringVal(build.AuthorizedKey)}),
		})
		users, ok := cc["users"]
		if !ok {
			// An explicit users list replaces cloud-init's default user; keep it, as the image would have it.
			users = cty.TupleVal([]cty.Value{cty.StringVal("default")})
		}
		cc["users"] = appendTuple(users, user)
	}

	doc, err := marshalCloudConfig(cty.ObjectVal(cc))
	if err != nil {
		return nil, err
	}
	if raw == "" {
		return doc, nil
	}
	return multipartUserData(doc, raw)
}

func writeFile(path, content, perm string) cty.Value {
	return cty.ObjectVal(map[string]cty.Value{
		"path":        cty.StringVal(path),
		"content":     cty.StringVal(content),
		"owner":       cty.StringVal("root:root"),
		"permissions": cty.StringVal(perm),
	})
}

// appendTuple appends to a list or tuple value, giving a tuple so elements of different shapes can mix.
func appendTuple(list cty.Value, more ...cty.Value) cty.Value {
	var elems []cty.Value
	if list != cty.NilVal && !list.IsNull() && list.CanIterateElements() {
		for it := list.ElementIterator(); it.Next(); {
			_, v := it.Element()
			elems = append(elems, v)
		}
	}
	return cty.TupleVal(append(elems, more...))
}

// marshalCloudConfig renders the value through yaml.v3's node tree: keys sorted, multi-line strings as
// literal blocks, strings that would read back as numbers or booleans ("0644", "yes") quoted by the encoder.
func marshalCloudConfig(v cty.Value) ([]byte, error) {
	node, err := yamlNode(v)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteString("#cloud-config\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(node); err != nil {
		return nil, fmt.Errorf("rendering cloud-config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("rendering cloud-config: %w", err)
	}
	return buf.Bytes(), nil
}

func yamlNode(v cty.Value) (*yaml.Node, error) {
	v, _ = v.UnmarkDeep()
	if v.IsNull() {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v.AsString()}
		if strings.Contains(n.Value, "\n") {
			n.Style = yaml.LiteralStyle
		}
		return n, nil
	case ty == cty.Number:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: numberTag(v), Value: v.AsBigFloat().Text('f', -1)}, nil
	case ty == cty.Bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: fmt.Sprint(v.True())}, nil
	case ty.IsListType() || ty.IsTupleType() || ty.IsSetType():
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			c, err := yamlNode(e)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, c)
		}
		return n, nil
	case ty.IsMapType() || ty.IsObjectType():
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		m := v.AsValueMap()
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			c, err := yamlNode(m[k])
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, c)
		}
		return n, nil
	}
	return nil, fmt.Errorf("cannot render a %s in cloud-config", ty.FriendlyName())
}

func numberTag(v cty.Value) string {
	if v.AsBigFloat().IsInt() {
		return "!!int"
	}
	return "!!float"
}

// multipartUserData packs the generated cloud-config and the user's raw part into one MIME archive, the
// format cloud-init documents for several user-data parts. The boundary is fixed so the seed is reproducible.
func multipartUserData(cloudConfig []byte, raw string) ([]byte, error) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	if err := w.SetBoundary("imgform-userdata-boundary"); err != nil {
		return nil, err
	}
	fmt.Fprintf(&buf, "Content-Type: multipart/mixed; boundary=%q\nMIME-Version: 1.0\n\n", w.Boundary())
	parts := []struct{ ctype, body string }{
		{"text/cloud-config", string(cloudConfig)},
		{rawContentType(raw), raw},
	}
	for i, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", p.ctype+`; charset="utf-8"`)
		h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="part-%d"`, i+1))
		pw, err := w.CreatePart(h)
		if err != nil {
			return nil, err
		}
		if _, err := io.WriteString(pw, p.body); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// rawContentType maps the first line of raw user-data to the MIME type cloud-init's handlers expect.
func rawContentType(raw string) string {
	for prefix, ctype := range map[string]string{
		"#!":                 "text/x-shellscript",
		"#cloud-boothook":    "text/cloud-boothook",
		"#include":           "text/x-include-url",
		"#part-handler":      "text/part-handler",
		"#cloud-config":      "text/cloud-config",
		"## template: jinja": "text/jinja2",
	} {
		if strings.HasPrefix(raw, prefix) {
			return ctype
		}
	}
	return "text/plain"
}
