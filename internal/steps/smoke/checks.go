package smoke

import (
	"fmt"
	"strings"

	"gitlab.com/imgform/imgform/internal/config"
)

// Names of the built-in checks, as the output, the manifest and the error of a failing one show them.
const (
	CheckBoot        = "boot"
	CheckCloudInit   = "cloud-init"
	CheckMachineID   = "machine-id"
	CheckSSHHostKeys = "ssh-host-keys"
	CheckBuildUser   = "build-user"
	CheckNetwork     = "network"
	CheckDNS         = "dns"
	CheckBuildTraces = "build-traces"
)

// SkipExit is the exit status with which a check script says it does not apply (automake's convention).
const SkipExit = 77

// Environment variables the check scripts read; the runner sets them (Env) for each run.
const (
	EnvInstanceID     = "IMGFORM_INSTANCE_ID"
	EnvBuildMachineID = "IMGFORM_BUILD_MACHINE_ID"
	EnvBuildUser      = "IMGFORM_BUILD_USER"
	EnvBuildKey       = "IMGFORM_BUILD_KEY"
	EnvDNSQuery       = "IMGFORM_DNS_QUERY"
)

// Check is one built-in check of an image. Script runs in the guest as root; Host checks are done by the
// runner on the host, with what their Script prints in the guest (as the test user) when they have one.
// Skip, when set, says why the check does not apply to this image, and nothing runs.
type Check struct {
	Name   string
	Script string
	Host   bool
	Skip   string
}

// Checks returns the built-in checks of an image in the order they run. Checks that a smoke_test block
// switches off are left out; checks whose promise the cleanup block does not make are skipped with the
// reason. The boot (a login with the throwaway key) is always checked: without it nothing else can be.
func Checks(img *config.Image) []Check {
	st, cl := img.SmokeTest, img.Cleanup
	if !st.Enabled {
		return nil
	}
	var out []Check
	add := func(on bool, c Check) {
		if on {
			out = append(out, c)
		}
	}
	add(st.CloudInit, Check{Name: CheckCloudInit, Script: cloudInitScript(cl.CloudInit)})
	mid := Check{Name: CheckMachineID, Script: machineIDScript}
	if !cl.MachineID {
		mid.Skip = "cleanup keeps the build's machine-id (machine_id = false)"
	}
	add(st.MachineID, mid)
	// The runner compares the host key the handshake showed, and every one this prints, with the build's.
	hk := Check{Name: CheckSSHHostKeys, Host: true, Script: "cat /etc/ssh/ssh_host_*_key.pub\n"}
	if !cl.SSHHostKeys {
		hk.Skip = "cleanup keeps the build's host keys (ssh_host_keys = false)"
	}
	add(st.SSHHostKeys, hk)
	add(st.BuildUser, Check{Name: CheckBuildUser, Script: buildUserScript})
	networks := append(append([]*config.NetworkUnit{}, img.InheritedNetworks...), img.Networks...)
	nw := Check{Name: CheckNetwork, Script: NetworkScript(networks)}
	if len(networks) == 0 {
		nw.Skip = "the image has no network blocks (nor the images it derives from)"
	}
	add(st.Network, nw)
	add(st.DNS, Check{Name: CheckDNS, Script: dnsScript})
	add(st.BuildTraces, Check{Name: CheckBuildTraces, Script: buildTracesScript(img)})
	return out
}

// KeyText is every check script of an image and the test user-data, for the test step's key.
func KeyText(img *config.Image) string {
	var b strings.Builder
	fmt.Fprintf(&b, "user-data:\n%s\n", UserData("<throwaway key>"))
	for _, c := range Checks(img) {
		fmt.Fprintf(&b, "check %s host=%v skip=%q:\n%s\n", c.Name, c.Host, c.Skip, c.Script)
	}
	return b.String()
}

func cloudInitScript(cleaned bool) string {
	s := `fail=0
# cloud-init status --wait has passed; result.json lists the errors of the run, also recoverable ones.
if [ -f /run/cloud-init/result.json ] && ! grep -q '"errors": \[\]' /run/cloud-init/result.json; then
  echo "cloud-init reported errors:"; cat /run/cloud-init/result.json; fail=1
fi
`
	if cleaned {
		s += `ids=$(ls -1 /var/lib/cloud/instances 2>/dev/null | tr '\n' ' ')
if [ "$ids" != "$IMGFORM_INSTANCE_ID " ]; then
  echo "cloud-init has data of the instances: ${ids:-none} (want only this one, $IMGFORM_INSTANCE_ID): the build's instance was not cleaned"
  fail=1
fi
`
	}
	return s + "exit $fail\n"
}

const machineIDScript = `id=$(cat /etc/machine-id 2>/dev/null || true)
echo "machine-id: ${id:-(empty)}"
if ! printf '%s\n' "$id" | grep -Eqx '[0-9a-f]{32}'; then
  echo "/etc/machine-id is not a 32-digit id: systemd did not give this instance one"; exit 1
fi
if [ "$id" = "$IMGFORM_BUILD_MACHINE_ID" ]; then
  echo "this is the build's machine-id: every instance of the image would share it"; exit 1
fi
`

const buildUserScript = `fail=0
u=$IMGFORM_BUILD_USER
if id "$u" >/dev/null 2>&1; then echo "the build user $u exists"; fail=1; fi
for p in "/home/$u" "/etc/sudoers.d/$u"; do
  if [ -e "$p" ]; then echo "$p exists"; fail=1; fi
done
if grep -qs "^$u[[:space:]]" /etc/sudoers /etc/sudoers.d/*; then echo "sudoers still name $u"; fail=1; fi
k=$(printf '%s\n' "$IMGFORM_BUILD_KEY" | cut -d' ' -f2)
where=$(grep -rlsF -- "$k" /root /home /etc/ssh 2>/dev/null | head -n 5 | tr '\n' ' ')
if [ -n "$where" ]; then echo "the build key is still authorized in: $where"; fail=1; fi
exit $fail
`

const dnsScript = `target=$(readlink -f /etc/resolv.conf 2>/dev/null || true)
case $target in
/run/systemd/resolve/*) ;;
*) echo "/etc/resolv.conf is not systemd-resolved's (${target:-none}): nothing to check"; exit 77 ;;
esac
servers=$(resolvectl dns 2>&1 || true)
echo "$servers"
if ! printf '%s\n' "$servers" | grep -Eq ':[[:space:]]+[0-9a-fA-F]'; then
  echo "systemd-resolved knows no DNS server: DHCP's did not reach it"; resolvectl status --no-pager 2>&1 | tail -n 20; exit 1
fi
if [ -n "$IMGFORM_DNS_QUERY" ]; then
  resolvectl query --cache=no "$IMGFORM_DNS_QUERY" || { echo "$IMGFORM_DNS_QUERY does not resolve through systemd-resolved"; exit 1; }
fi
`

// NetworkScript checks that every unit configures at least one interface, that each such interface is
// configured by systemd-networkd and has a global address, and that its default route has the metric the
// unit asks DHCPv4 for.
func NetworkScript(units []*config.NetworkUnit) string {
	if len(units) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(`fail=0
if ! systemctl is-active --quiet systemd-networkd.service; then
  echo "systemd-networkd is not running (enabled: $(systemctl is-enabled systemd-networkd.service 2>&1))"; fail=1
fi
links=$(networkctl list --no-legend --no-pager 2>/dev/null | awk '{print $2}')
unit() { # unit NAME FILE METRIC
  matched=
  for l in $links; do
    if networkctl status --no-pager -n 0 "$l" 2>/dev/null | grep -Eq "Network File: $2\$"; then matched="$matched $l"; fi
  done
  if [ -z "$matched" ]; then
    echo "network \"$1\": no interface is configured by $2 (interfaces:" $links")"; fail=1; return
  fi
  for l in $matched; do
    setup=$(networkctl list --no-legend --no-pager | awk -v l="$l" '$2 == l {print $5}')
    addrs=$(ip -br addr show dev "$l" scope global | awk '{$1 = $2 = ""; sub(/^ +/, ""); print}')
    echo "network \"$1\": $l is $setup, addresses: ${addrs:-none}"
    if [ "$setup" != configured ]; then echo "  $l is not configured by systemd-networkd"; fail=1; fi
    if [ -z "$(echo $addrs)" ]; then echo "  $l has no global address"; fail=1; fi
    if [ -n "$3" ]; then
      route=$(ip -4 route show default dev "$l")
      echo "  default route: ${route:-none}"
      if ! printf '%s\n' "$route" | grep -Eq "metric $3( |\$)"; then echo "  the default route of $l lacks metric $3"; fail=1; fi
    fi
  done
}
`)
	for _, u := range units {
		fmt.Fprintf(&b, "unit %s %s %s\n", shellQuote(u.Name), shellQuote(config.NetworkUnitDir+"/"+u.FileName()),
			shellQuote(u.DHCPv4RouteMetric()))
	}
	b.WriteString(`if [ "$fail" != 0 ]; then
  echo "--- networkctl list"; networkctl list --no-pager 2>&1
  echo "--- ip route"; ip route 2>&1
  echo "--- journal of systemd-networkd"; journalctl -b -u systemd-networkd --no-pager 2>&1 | tail -n 15
fi
exit $fail
`)
	return b.String()
}

// buildTracesScript looks where the cleanup promised to clean, and where imgform itself wrote.
func buildTracesScript(img *config.Image) string {
	var b strings.Builder
	b.WriteString(`fail=0
left() { echo "left by the build: $*"; fail=1; }
for f in /tmp/imgform-* /var/tmp/imgform-* /.imgform-zero; do
  if [ -e "$f" ]; then left "$f"; fi
done
`)
	if len(img.Networks)+len(img.InheritedNetworks) > 0 {
		b.WriteString(`for f in /etc/network/interfaces.d/50-cloud-init /etc/netplan/50-cloud-init.yaml; do
  if [ -e "$f" ]; then left "$f (cloud-init's network configuration of the build boot)"; fi
done
`)
	}
	if img.Cleanup.Logs {
		b.WriteString(`boots=$(journalctl --list-boots --no-pager 2>/dev/null | grep -Ec '^ *-?[0-9]+ +[0-9a-f]{32}' || true)
if [ "${boots:-0}" -gt 1 ]; then left "the journal of $((boots - 1)) earlier boot(s)"; journalctl --list-boots --no-pager; fi
`)
	}
	if img.Cleanup.AptLists {
		b.WriteString(`if ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then left "apt's package lists in /var/lib/apt/lists"; fi
`)
	}
	b.WriteString("exit $fail\n")
	return b.String()
}

// Env returns the environment of the check scripts.
func Env(img *config.Image, instanceID, buildMachineID, buildUser, buildKey string) map[string]string {
	return map[string]string{
		EnvInstanceID: instanceID, EnvBuildMachineID: buildMachineID, EnvBuildUser: buildUser,
		EnvBuildKey: buildKey, EnvDNSQuery: img.SmokeTest.DNSQuery,
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
