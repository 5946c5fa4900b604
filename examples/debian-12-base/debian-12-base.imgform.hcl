# Debian 12 golden base image: the official genericcloud image, upgraded, with an admin user, password-less
# sudo for the sudonp group, unattended upgrades with automatic reboot, systemd-networkd instead of
# cloud-init's network configuration, and every trace of the build removed.

locals {
  sudoers_sudonp = "%sudonp ALL=(ALL:ALL) NOPASSWD: ALL\n"
}

image "debian-12-base" {
  # A golden image exists to carry the latest security updates: a cached boot (with its package upgrade)
  # older than a week is built again, and everything after it.
  refresh_every = "7d"

  source {
    url      = var.source_url
    checksum = var.source_checksum
  }

  machine {
    type        = "q35"
    memory      = "1GiB"
    cpus        = 2
    disk_size   = "4GiB"
    accelerator = "auto"
    firmware    = "bios"
  }

  userdata {
    cloud_config = {
      # etckeeper commits /etc to a git repository on "main", not git's old default branch.
      bootcmd = [
        "grep -qs defaultBranch /etc/gitconfig || printf '[init]\\n\\tdefaultBranch = main\\n' >> /etc/gitconfig",
      ]
      groups = ["adm", "sudo", "sudonp"]
      growpart = {
        mode    = "auto"
        devices = ["/"]
      }
      resize_rootfs   = true
      package_update  = true
      package_upgrade = true
      packages        = var.packages
      ssh_genkeytypes = var.ssh_key_types
      ssh_pwauth      = false
      users = [
        "default",
        {
          name                = var.admin_user
          groups              = "adm,sudo,sudonp"
          shell               = "/bin/bash"
          lock_passwd         = true
          ssh_authorized_keys = var.admin_ssh_keys
        },
      ]
      write_files = [
        {
          path        = "/etc/sudoers.d/sudonp"
          content     = local.sudoers_sudonp
          owner       = "root:root"
          permissions = "0440"
        },
        {
          path        = "/etc/apt/apt.conf.d/20auto-upgrades"
          content     = file("files/20auto-upgrades")
          permissions = "0644"
        },
        {
          path        = "/etc/apt/apt.conf.d/52unattended-upgrades-local"
          content     = templatefile("files/52unattended-upgrades-local.tftpl", { reboot_time = "03:30" })
          permissions = "0644"
        },
      ]
    }
  }

  # The first interface, whatever the hypervisor calls it: DHCPv4 only, no IPv6, no mDNS, no LLMNR. imgform
  # hands the interface to systemd-networkd in the image (docs/configuration.md says exactly what it changes).
  network "50-default" {
    match = {
      Name = ["en*", "eth*"]
    }
    network = {
      DHCP                = "ipv4"
      LinkLocalAddressing = "no"
      IPv6AcceptRA        = false
      LLMNR               = false
      MulticastDNS        = false
    }
    dhcpv4 = {
      RouteMetric = var.route_metric
      UseDomains  = true
    }
  }

  provision "motd" {
    file {
      content     = "Debian 12 base image ${var.version}, built by imgform.\n"
      destination = "/etc/motd"
      mode        = "0644"
    }
    inline = ["test -s /etc/motd"]

    # The dpkg database, copied out next to the image: the package list that SBOM and vulnerability
    # scanners (syft, trivy) read without booting the image. It is cached with this step.
    file {
      direction   = "download"
      source      = "/var/lib/dpkg/status"
      destination = "dist/debian-12-base-${var.version}.dpkg-status"
    }
  }

  cleanup {
    cloud_init      = true
    machine_id      = true
    ssh_host_keys   = true
    resolved        = true
    apt_lists       = true
    logs            = true
    zero_free_space = true
    trim            = true
  }

  # After the export, a new instance of the image boots with a fresh seed and is checked: the built-in checks
  # (network, new identity, no build user or traces) and these, which check what this image promises.
  test "motd" {
    inline = ["grep -q 'built by imgform' /etc/motd"]
  }

  test "admin-user" {
    inline = [
      "id -nG ${var.admin_user} | tr ' ' '\\n' | grep -qx sudonp",
      "test \"$(stat -c %a /etc/sudoers.d/sudonp)\" = 440",
      "visudo -c -q",
    ]
    sudo = true
  }

  test "packages" {
    inline = ["for p in ${join(" ", var.packages)}; do dpkg-query -W -f '$${db:Status-Status}\\n' \"$p\" | grep -qx installed; done"]
  }

  output "qcow2" {
    format      = "qcow2"
    compression = "zstd"
    level       = var.zstd_level
    path        = "dist/debian-12-base-${var.version}.qcow2.zst"
  }
}
