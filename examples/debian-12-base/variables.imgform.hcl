variable "source_url" {
  type        = string
  description = "Where the Debian 12 genericcloud image comes from. Tests and `make demo` point it at a local image."
  default     = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
}

variable "source_checksum" {
  type        = string
  description = "Checksum of the source: a sums file next to the image, or sha256:/sha512: with the digest."
  default     = "file:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS"
}

variable "version" {
  type        = string
  description = "Version stamped into the output file name."
  default     = "2026.11"
}

variable "admin_user" {
  type        = string
  description = "The administrator account, member of adm, sudo and sudonp."
  default     = "debian"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.admin_user))
    error_message = "The admin user must be a valid Linux user name: lower case letters, digits, _ and -, at most 32 characters."
  }
}

variable "admin_ssh_keys" {
  type        = list(string)
  description = "SSH public keys authorized for the admin user in the image (empty: add them at deploy time)."
  default     = []
}

variable "packages" {
  type        = list(string)
  description = "Packages installed on top of the source image."
  default     = ["etckeeper", "unattended-upgrades", "qemu-guest-agent", "curl", "vim-tiny"]
}

variable "ssh_key_types" {
  type        = list(string)
  description = "SSH host key types cloud-init generates on the first boot of each instance."
  default     = ["ed25519", "rsa"]

  validation {
    condition     = alltrue([for t in var.ssh_key_types : contains(["rsa", "ecdsa", "ed25519"], t)])
    error_message = "SSH host key types are rsa, ecdsa and ed25519."
  }
}

variable "route_metric" {
  type        = number
  description = "Metric of the DHCPv4 routes of the first interface."
  default     = 100
}

variable "zstd_level" {
  type        = number
  description = "zstd level of the exported image (1-22): 3 is fast, 19 is small."
  default     = 19
}
