variable "source_url" {
  type        = string
  description = "Where the Debian 12 genericcloud image comes from. `make bench` points it at the local test image."
  default     = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
}

variable "source_checksum" {
  type        = string
  description = "Checksum of the source: a sums file next to the image, or sha256:/sha512: with the digest."
  default     = "file:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS"
}

variable "version" {
  type        = string
  description = "Version stamped into the output file names."
  default     = "2026.11"
}

variable "zstd_level" {
  type        = number
  description = "zstd level of the exported images (1-22): 3 is fast, 19 is small."
  default     = 3
}
