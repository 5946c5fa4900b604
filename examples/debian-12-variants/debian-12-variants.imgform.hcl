# Two Debian 12 variants built from one shared base: a build agent and an SSH bastion.
#
# The base image "debian-12-small" is a quick base (no package upgrade, no extra packages, so its first boot
# is short even under software emulation) and has no output of its own: it exists to be built once and
# shared. Each variant starts from its final layer with source { image = image.debian-12-small }, runs its
# own provisioner and writes its own output. The two variants depend on the base but not on each other, so
# `imgform apply` builds them side by side (two VMs at once with the default -parallelism 2), and a change
# to one variant re-runs that variant only.

image "debian-12-small" {
  source {
    url      = var.source_url
    checksum = var.source_checksum
  }

  machine {
    memory    = "1GiB"
    cpus      = 2
    disk_size = "3GiB"
  }

  # No apt at all on the build boot: package_update alone costs more than a minute under TCG.
  userdata {
    cloud_config = {
      package_update  = false
      package_upgrade = false
      ssh_pwauth      = false
      users           = ["default"]
    }
  }

  network "50-default" {
    match = {
      Name = ["en*", "eth*"]
    }
    network = {
      DHCP                = "ipv4"
      LinkLocalAddressing = "no"
      IPv6AcceptRA        = false
    }
  }

  provision "motd" {
    file {
      content     = "Debian 12 small base ${var.version}, built by imgform.\n"
      destination = "/etc/motd"
      mode        = "0644"
    }
  }

  # cloud_init = true (the default) matters here: each variant's build boot is then a first boot again,
  # on which cloud-init creates the variant's build user and new host keys.
  cleanup {
    apt_lists = true
    logs      = true
  }
}

# A CI build agent: an unprivileged service account and its work folder.
image "debian-12-agent" {
  source {
    image = image.debian-12-small
  }

  # One vCPU per variant: both variants boot at the same time, and two single-vCPU guests fit a 2-core host.
  machine {
    cpus = 1
  }

  provision "agent" {
    inline = [
      "useradd --system --create-home --home-dir /srv/agent --shell /usr/sbin/nologin agent",
      "install -d -o agent -g agent -m 0750 /srv/agent/work",
    ]
    sudo = true
  }

  output "qcow2" {
    format      = "qcow2"
    compression = "zstd"
    level       = var.zstd_level
    path        = "dist/debian-12-agent-${var.version}.qcow2.zst"
  }
}

# An SSH bastion: key-only SSH without root login, and no forwarding of IP packets.
image "debian-12-bastion" {
  source {
    image = image.debian-12-small
  }

  machine {
    cpus = 1
  }

  provision "hardening" {
    file {
      content     = "PermitRootLogin no\nPasswordAuthentication no\nX11Forwarding no\n"
      destination = "/etc/ssh/sshd_config.d/50-bastion.conf"
      mode        = "0644"
    }
    file {
      content     = "net.ipv4.ip_forward = 0\nnet.ipv6.conf.all.forwarding = 0\n"
      destination = "/etc/sysctl.d/50-bastion.conf"
      mode        = "0644"
    }
    inline = ["sshd -t"]
    sudo   = true
  }

  output "qcow2" {
    format      = "qcow2"
    compression = "zstd"
    level       = var.zstd_level
    path        = "dist/debian-12-bastion-${var.version}.qcow2.zst"
  }
}
