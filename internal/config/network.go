package config

import (
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// networkSections are the sections of a systemd.network(5) file (systemd 252, Debian 12), in the order
// they are written. In HCL a section is an attribute named like the section in any case, with dashes or
// underscores: dhcpv4, DHCPv4, ipv6_accept_ra. Repeatable sections take a list of objects.
var networkSections = []string{
	"Match", "Link", "SR-IOV", "Network", "Address", "Neighbor", "IPv6AddressLabel", "RoutingPolicyRule",
	"NextHop", "Route", "DHCPv4", "DHCPv6", "DHCPPrefixDelegation", "IPv6AcceptRA", "DHCPServer",
	"DHCPServerStaticLease", "IPv6SendRA", "IPv6Prefix", "IPv6RoutePrefix", "LLDP", "CAN", "IPoIB", "QDisc",
	"NetworkEmulator", "TokenBucketFilter", "PIE", "FlowQueuePIE", "StochasticFairBlue",
	"StochasticFairnessQueueing", "BFIFO", "PFIFO", "PFIFOHeadDrop", "PFIFOFast", "CAKE",
	"ControlledDelay", "DeficitRoundRobinScheduler", "DeficitRoundRobinSchedulerClass",
	"EnhancedTransmissionSelection", "GenericRandomEarlyDetection", "FairQueueingControlledDelay",
	"FairQueueing", "TrivialLinkEqualizer", "HierarchyTokenBucket", "HierarchyTokenBucketClass",
	"HeavyHitterFilter", "QuickFairQueueing", "QuickFairQueueingClass", "BridgeVLAN", "Bridge",
	"BridgeFDB", "BridgeMDB",
}

func sectionID(s string) string {
	return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
}

var sectionByID = func() map[string]string {
	m := map[string]string{}
	for _, s := range networkSections {
		m[sectionID(s)] = s
	}
	return m
}()

var unitKeyPattern = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)

// network decodes a network block: every attribute is a section.
func (d *decoder) network(b *hcl.Block) *NetworkUnit {
	u := &NetworkUnit{Name: b.Labels[0], DeclRange: b.DefRange, VarRefs: d.refs(b)}
	attrs, diags := b.Body.JustAttributes()
	d.diags = append(d.diags, diags...)
	bySection := map[string][]*unit.UnitSection{}
	for name, attr := range attrs {
		section, ok := sectionByID[sectionID(name)]
		if !ok {
			d.errorf(attr.NameRange, "Unknown network section",
				"%q is not a section of a systemd-networkd .network file.%s Sections are attributes such as match, network, address, route, dhcpv4.",
				name, suggestName(name, networkSections))
			continue
		}
		if _, dup := bySection[section]; dup {
			d.errorf(attr.NameRange, "Duplicate network section", "[%s] is given twice in network %q; for repeated sections use a list of objects.", section, u.Name)
			continue
		}
		v, ok := d.value(attr, cty.DynamicPseudoType)
		if !ok {
			continue
		}
		var objs []cty.Value
		switch {
		case v.Type().IsObjectType() || v.Type().IsMapType():
			objs = []cty.Value{v}
		case v.Type().IsTupleType() || v.Type().IsListType():
			for it := v.ElementIterator(); it.Next(); {
				_, e := it.Element()
				objs = append(objs, e)
			}
		default:
			d.errorf(attr.Expr.Range(), "Invalid network section",
				"[%s] must be an object like { Key = \"value\" } or a list of such objects, not %s.", section, v.Type().FriendlyName())
			continue
		}
		for _, obj := range objs {
			s, err := unitSection(section, obj)
			if err != nil {
				d.errorf(attr.Expr.Range(), "Invalid network section", "[%s]: %s.", section, err)
				continue
			}
			bySection[section] = append(bySection[section], s)
		}
	}
	for _, s := range networkSections {
		u.Sections = append(u.Sections, bySection[s]...)
	}
	if len(u.Sections) == 0 && !d.diags.HasErrors() {
		d.errorf(b.DefRange, "Empty network unit", "Network %q has no sections; give at least match = { Name = \"en*\" } and network = { DHCP = \"ipv4\" }.", u.Name)
	}
	return u
}

// unitSection turns an object into one section; a list value becomes a repeated key (DNS=a, DNS=b).
func unitSection(section string, obj cty.Value) (*unit.UnitSection, error) {
	if !obj.Type().IsObjectType() && !obj.Type().IsMapType() {
		return nil, fmt.Errorf("each element must be an object, not %s", obj.Type().FriendlyName())
	}
	s := &unit.UnitSection{Section: section}
	for it := obj.ElementIterator(); it.Next(); {
		k, v := it.Element()
		key := k.AsString()
		if !unitKeyPattern.MatchString(key) {
			return nil, fmt.Errorf("%q is not a systemd key; keys are written as in systemd.network(5), e.g. RouteMetric", key)
		}
		var vals []cty.Value
		if v.Type().IsTupleType() || v.Type().IsListType() || v.Type().IsSetType() {
			for it := v.ElementIterator(); it.Next(); {
				_, e := it.Element()
				vals = append(vals, e)
			}
		} else {
			vals = []cty.Value{v}
		}
		for _, e := range vals {
			text, err := unitValue(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			s.Entries = append(s.Entries, &unit.UnitEntry{Name: key, Value: text})
		}
	}
	return s, nil
}

func unitValue(v cty.Value) (string, error) {
	if v.IsNull() {
		return "", fmt.Errorf("null is not a value; remove the key instead")
	}
	switch v.Type() {
	case cty.Bool:
		if v.True() {
			return "yes", nil
		}
		return "no", nil
	case cty.Number:
		return v.AsBigFloat().Text('f', -1), nil
	case cty.String:
		s := v.AsString()
		if strings.ContainsAny(s, "\n\r") {
			return "", fmt.Errorf("a value cannot span several lines")
		}
		return s, nil
	}
	return "", fmt.Errorf("a value must be a string, number or bool, not %s", v.Type().FriendlyName())
}

// Render returns the .network file, serialized by go-systemd's unit package.
func (n *NetworkUnit) Render() ([]byte, error) {
	return io.ReadAll(unit.SerializeSections(n.Sections))
}

// FileName is the unit's file name under /etc/systemd/network.
func (n *NetworkUnit) FileName() string { return n.Name + ".network" }

// DHCPv4RouteMetric is the RouteMetric the unit sets for the routes DHCPv4 gives ("" when it sets none or
// does not run DHCPv4), which the test step expects on the default route.
func (n *NetworkUnit) DHCPv4RouteMetric() string {
	dhcp, metric := "", ""
	for _, s := range n.Sections {
		for _, e := range s.Entries {
			switch {
			case s.Section == "Network" && e.Name == "DHCP":
				dhcp = e.Value
			case (s.Section == "DHCPv4" || s.Section == "DHCP") && e.Name == "RouteMetric":
				metric = e.Value
			}
		}
	}
	switch dhcp {
	case "yes", "true", "ipv4", "1", "on":
		return metric
	}
	return ""
}

// NetworkVarRefs names the variables the image's network blocks use.
func (img *Image) NetworkVarRefs() []string {
	var refs []string
	for _, n := range img.Networks {
		refs = append(refs, n.VarRefs...)
	}
	return refs
}
