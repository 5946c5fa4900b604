package cleanup

import (
	"path"
	"strings"

	"gitlab.com/imgform/imgform/internal/config"
)

// NetworkHandoff returns the part of the cleanup script that hands the interfaces the network units match
// over to systemd-networkd, or "" when there are no units. The units themselves were written by cloud-init on
// the build boot (Image.RenderUserData); the build boot keeps the source's own network stack, so the
// handoff only takes effect on the image's next boot. In this order, it
//
//  1. fails (exit 1) when systemd-networkd is not installed, naming the package;
//  2. enables systemd-networkd, and systemd-resolved where it is installed (pointing /etc/resolv.conf at its
//     stub), or warns that DNS servers from DHCP will not reach /etc/resolv.conf;
//  3. disables cloud-init's network rendering for later boots (where cloud-init is installed);
//  4. removes what configures a claimed interface (claimedGlobs) for ifupdown, netplan and NetworkManager,
//     cloud-init's own files of the build boot included, and leaves every other interface, and lo, alone:
//     ifupdown's files lose the claimed names and stanzas and keep everything else byte for byte (a file
//     left empty stays, as ifupdown reads it as nothing); netplan files are rewritten without the claimed
//     entries (netplanPy); NetworkManager gets a conf.d file that sets unmanaged-devices to the claimed
//     interfaces, replacing an earlier file's list (appending with += would let an earlier except: win
//     over the claim), and loses the connection profiles bound to them.
//
// Every change is one "imgform: network: ..." line on stdout, for the build log.
//
// The fragment is POSIX sh for dash under set -eu, run as root. It works on the folder ${IMGFORM_ROOT:-}
// (empty: the live system), so that tests can run it on a file tree. It needs systemctl, and python3 with
// its yaml module only when there are netplan files (cloud-init brings both).
func NetworkHandoff(units []*config.NetworkUnit) string {
	if len(units) == 0 {
		return ""
	}
	globs := claimedGlobs(units)
	quoted := make([]string, len(globs))
	for i, g := range globs {
		quoted[i] = shellQuote(g)
	}
	return strings.NewReplacer(
		"@GLOBS@", strings.Join(quoted, " "),
		"@CLOUD_CFG@", config.DisableNetworkConfigCfg,
		"@NM_UNMANAGED@", shellQuote("unmanaged-devices="+nmUnmanaged(globs)),
		"@NETPLAN_PY@", netplanPy,
	).Replace(handoffScript)
}

// claimedGlobs returns the interface name globs that the units' [Match] Name= entries give, each value being
// a space-separated list of shell-style globs (systemd.network(5)), without duplicates, in the units' order.
// A unit without Name= (it may match by MAC address, driver or path), or with a negated one ("!eth0"), may
// match any interface, so it claims all of them: the result is then just "*". An empty Name= resets the
// list, as in systemd. lo is never claimed, whatever the globs; the script checks that, not this list.
func claimedGlobs(units []*config.NetworkUnit) []string {
	var globs []string
	seen := map[string]bool{}
	for _, u := range units {
		var names []string
		for _, s := range u.Sections {
			if s.Section != "Match" {
				continue
			}
			for _, e := range s.Entries {
				if e.Name != "Name" {
					continue
				}
				fields := strings.Fields(e.Value)
				if len(fields) == 0 {
					names = nil
					continue
				}
				names = append(names, fields...)
			}
		}
		for _, n := range names {
			if strings.HasPrefix(n, "!") {
				names = nil
				break
			}
		}
		if len(names) == 0 {
			return []string{"*"}
		}
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				globs = append(globs, n)
			}
		}
	}
	for _, g := range globs {
		if g == "*" {
			return []string{"*"}
		}
	}
	return globs
}

// nmUnmanaged returns NetworkManager's device list (NetworkManager.conf(5), "Device List Format") for the
// claimed globs; NetworkManager matches interface names with globs too. lo is excepted when a glob matches it.
func nmUnmanaged(globs []string) string {
	specs := make([]string, 0, len(globs)+1)
	lo := false
	for _, g := range globs {
		specs = append(specs, "interface-name:"+g)
		if ok, _ := path.Match(g, "lo"); ok {
			lo = true
		}
	}
	if lo {
		specs = append(specs, "except:interface-name:lo")
	}
	return strings.Join(specs, ";")
}

// handoffScript is NetworkHandoff's fragment; @GLOBS@ becomes the quoted claimed globs, @CLOUD_CFG@ the path
// of cloud-init's setting, @NM_UNMANAGED@ NetworkManager's quoted setting line, @NETPLAN_PY@ netplanPy.
const handoffScript = `# network handoff: systemd-networkd takes the interfaces of the network blocks over from the source's
# network stack on the image's next boot; this boot keeps the stack it came up with.
net_root=${IMGFORM_ROOT:-}
net_say() { printf 'imgform: network: %s\n' "$*"; }
net_systemctl() {
	# --root works on the files alone, without a running systemd
	if [ -n "$net_root" ]; then systemctl --root="$net_root" "$@"; else systemctl "$@"; fi
}
# net_installed UNIT tells whether the image has the unit file.
net_installed() {
	for net_d in /lib/systemd/system /usr/lib/systemd/system /etc/systemd/system; do
		if [ -e "$net_root$net_d/$1" ] || [ -L "$net_root$net_d/$1" ]; then return 0; fi
	done
	return 1
}
# net_claimed NAME tells whether a network block matches the interface NAME: the globs of the blocks'
# [Match] Name= entries, matched as systemd does (fnmatch, here the shell's case). lo is never claimed.
net_claimed() {
	net_name=$1
	set -- @GLOBS@
	if [ -z "$net_name" ] || [ "$net_name" = lo ]; then return 1; fi
	for net_glob; do
		# shellcheck disable=SC2254 # the globs are patterns
		case $net_name in $net_glob) return 0 ;; esac
	done
	return 1
}
# net_remove FILE removes the image's FILE, if there, and says so.
net_remove() {
	if [ -e "$net_root$1" ] || [ -L "$net_root$1" ]; then
		rm -f "$net_root$1"
		net_say "removed $1"
	fi
}

if ! net_installed systemd-networkd.service; then
	echo 'imgform: the image has network blocks but no systemd-networkd: install it in a provisioner (package systemd-networkd on Debian 13 and later and on Fedora; part of the systemd package on Debian 12 and Ubuntu), or remove the network blocks' >&2
	exit 1
fi
net_systemctl --quiet enable systemd-networkd.service
net_say "enabled systemd-networkd"
if net_installed systemd-resolved.service; then
	net_systemctl --quiet enable systemd-resolved.service
	net_say "enabled systemd-resolved"
	# networkd hands the DNS servers from DHCP to resolved, which serves them at its stub address only
	case $(readlink "$net_root/etc/resolv.conf" 2>/dev/null || true) in
	*/run/systemd/resolve/*) ;;
	*)
		ln -sfn /run/systemd/resolve/stub-resolv.conf "$net_root/etc/resolv.conf"
		net_say "pointed /etc/resolv.conf at /run/systemd/resolve/stub-resolv.conf"
		;;
	esac
else
	echo 'imgform: warning: systemd-resolved is not installed: DNS servers from DHCP will not reach /etc/resolv.conf (install systemd-resolved in a provisioner, or write /etc/resolv.conf yourself)'
fi

# cloud-init would render its own network configuration again on every later boot
if [ -d "$net_root/etc/cloud" ]; then
	mkdir -p "$net_root/etc/cloud/cloud.cfg.d"
	echo 'network: {config: disabled}' >"$net_root@CLOUD_CFG@"
	net_say "wrote @CLOUD_CFG@"
fi

# ifupdown: cloud-init's file of the build boot goes; in the other files the stanzas of claimed interfaces
# go and everything else stays byte for byte. A file left empty stays: ifupdown reads it as nothing.
# net_ifupdown_filter FILE copies an interfaces(5) file from stdin to stdout without what configures a
# claimed interface and reports on fd 3 what went. A subshell, for set -f: words such as "source dir/*"
# must not be expanded.
net_ifupdown_filter() (
	set -f
	net_file=$1
	net_drop= # set in a removed iface stanza, whose option lines go too
	while :; do
		net_eol=yes
		IFS= read -r net_line || {
			[ -n "$net_line" ] || break
			net_eol= # the last line has no newline, and gets none
		}
		# shellcheck disable=SC2086 # the words of the line, without globbing (set -f)
		set -- x $net_line
		shift
		net_keep=yes
		case ${1:-} in
		'') ;; # blank lines stay, also inside a removed stanza
		iface)
			net_drop=
			if net_claimed "${2:-}"; then
				net_drop=yes net_keep=
				printf 'imgform: network: removed iface %s from %s\n' "$2" "$net_file" >&3
			fi
			;;
		auto | allow-*)
			net_drop=
			net_kw=$1 net_rest='' net_cut=''
			shift
			for net_if; do
				if net_claimed "$net_if"; then
					net_cut=yes
					printf 'imgform: network: removed %s %s from %s\n' "$net_kw" "$net_if" "$net_file" >&3
				else
					net_rest="$net_rest $net_if"
				fi
			done
			if [ -n "$net_cut" ]; then
				net_line=$net_kw$net_rest
				[ -n "$net_rest" ] || net_keep=
			fi
			;;
		mapping | source | source-directory | no-auto-down | no-scripts | rename)
			net_drop=
			;;
		\#*)
			# a comment stays, unless it is indented inside a removed stanza
			if [ -n "$net_drop" ]; then
				case $net_line in [[:space:]]*) net_keep= ;; esac
			fi
			;;
		*)
			# an option line belongs to the stanza above
			[ -z "$net_drop" ] || net_keep=
			;;
		esac
		if [ -n "$net_keep" ]; then
			printf '%s' "$net_line"
			[ -z "$net_eol" ] || echo
		fi
	done
)
net_remove /etc/network/interfaces.d/50-cloud-init
for net_f in "$net_root/etc/network/interfaces" "$net_root"/etc/network/interfaces.d/*; do
	if [ ! -f "$net_f" ] || [ -L "$net_f" ]; then continue; fi
	net_tmp=$(mktemp)
	net_gone=$(net_ifupdown_filter "${net_f#"$net_root"}" <"$net_f" 3>&1 >"$net_tmp")
	if [ -n "$net_gone" ]; then
		# cat keeps the file's owner and mode
		cat "$net_tmp" >"$net_f"
		printf '%s\n' "$net_gone"
	fi
	rm -f "$net_tmp"
done

# netplan: cloud-init's file of the build boot goes; in the other files the ethernets and wifis entries of
# claimed interfaces go, and vendor files under /lib get a same-named override in /etc/netplan
net_remove /etc/netplan/50-cloud-init.yaml
net_yaml=
for net_f in "$net_root"/etc/netplan/*.yaml "$net_root"/lib/netplan/*.yaml "$net_root"/usr/lib/netplan/*.yaml; do
	if [ -e "$net_f" ]; then net_yaml=yes; fi
done
if [ -n "$net_yaml" ]; then
	if ! command -v python3 >/dev/null 2>&1; then
		echo 'imgform: the image has netplan files and network blocks but no python3 to edit them: install python3 and python3-yaml in a provisioner' >&2
		exit 1
	fi
	python3 - "$net_root" @GLOBS@ <<'IMGFORM_NETPLAN'
@NETPLAN_PY@
IMGFORM_NETPLAN
fi

# NetworkManager, where installed (netplan.io alone leaves an /etc/NetworkManager behind), leaves the claimed
# interfaces alone; its own and cloud-init's profiles for them go
if net_installed NetworkManager.service; then
	mkdir -p "$net_root/etc/NetworkManager/conf.d"
	printf '%s\n' '# imgform: systemd-networkd manages these interfaces (network blocks)' '[keyfile]' @NM_UNMANAGED@ \
		>"$net_root/etc/NetworkManager/conf.d/90-imgform-unmanaged.conf"
	net_say "wrote /etc/NetworkManager/conf.d/90-imgform-unmanaged.conf"
	for net_f in "$net_root"/etc/NetworkManager/system-connections/*; do
		if [ ! -f "$net_f" ]; then continue; fi
		case ${net_f##*/} in
		cloud-init-*.nmconnection) net_remove "${net_f#"$net_root"}" ;;
		*)
			net_if=$(sed -n 's/^[[:space:]]*interface-name[[:space:]]*=[[:space:]]*//p' "$net_f" | head -n 1)
			if net_claimed "$net_if"; then net_remove "${net_f#"$net_root"}"; fi
			;;
		esac
	done
fi
`
