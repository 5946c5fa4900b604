package cleanup

// netplanPy edits the netplan files (argv: the root folder, then the claimed globs). Entries of ethernets
// and wifis are claimed by their id, match.name or set-name, matched with fnmatch; a netplan glob in
// match.name is claimed when a claimed glob matches its text. Files are written back with PyYAML, which
// drops their comments, and mode 0600 as netplan wants. Bonds, bridges and VLANs stay, even when a member
// went. It must not contain the line IMGFORM_NETPLAN, which ends its here-document.
const netplanPy = `import fnmatch
import glob
import os
import sys

import yaml

root, globs = sys.argv[1], sys.argv[2:]
etc = root + "/etc/netplan"


def say(text):
    print("imgform: network: " + text)


def shown(path):
    return path[len(root):]


def claimed(name):
    if not isinstance(name, str) or name in ("", "lo"):
        return False
    return any(fnmatch.fnmatchcase(name, g) for g in globs)


def strip(doc):
    """Removes the claimed ethernets and wifis entries from doc; returns what went."""
    gone = []
    net = doc.get("network") if isinstance(doc, dict) else None
    if not isinstance(net, dict):
        return gone
    for kind in ("ethernets", "wifis"):
        entries = net.get(kind)
        if not isinstance(entries, dict):
            continue
        for key in list(entries):
            conf = entries[key] if isinstance(entries[key], dict) else {}
            match = conf.get("match") if isinstance(conf.get("match"), dict) else {}
            if any(claimed(n) for n in (key, match.get("name"), conf.get("set-name"))):
                del entries[key]
                gone.append("%s %s" % (kind, key))
        if not entries:
            del net[kind]
    return gone


def has_devices(doc):
    net = doc.get("network")
    return isinstance(net, dict) and any(k not in ("version", "renderer") for k in net)


def load(path):
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        sys.exit("imgform: network: cannot read %s: %s" % (shown(path), e))


def write(path, doc):
    tmp = path + ".imgform-new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, default_flow_style=False, sort_keys=False)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


# the vendor files by name; with a merged /usr both folders are one
vendor = {}
for d in ("/lib/netplan", "/usr/lib/netplan"):
    for path in sorted(glob.glob(glob.escape(root + d) + "/*.yaml")):
        vendor.setdefault(os.path.basename(path), path)

overridden = set()
for path in sorted(glob.glob(glob.escape(etc) + "/*.yaml")):
    name = os.path.basename(path)
    overridden.add(name)
    doc = load(path)
    gone = strip(doc)
    if not gone:
        continue
    for g in gone:
        say("removed %s from %s" % (g, shown(path)))
    if has_devices(doc):
        write(path, doc)
    elif name in vendor:
        # removing it would bring the vendor file of the same name back
        write(path, {"network": {"version": 2}})
        say("emptied %s, which still overrides %s" % (shown(path), shown(vendor[name])))
    else:
        os.remove(path)
        say("removed %s: no interfaces left" % shown(path))

for name, path in sorted(vendor.items()):
    if name in overridden:
        continue
    doc = load(path)
    gone = strip(doc)
    if not gone:
        continue
    if not has_devices(doc):
        doc = {"network": {"version": 2}}
    os.makedirs(etc, exist_ok=True)
    write(etc + "/" + name, doc)
    for g in gone:
        say("removed %s of %s with an override in %s" % (g, shown(path), shown(etc + "/" + name)))`
