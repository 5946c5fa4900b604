variable "cpus" {
  type    = number
  default = 0

  validation {
    condition     = var.cpus >= 1
    error_message = "At least one CPU, please."
  }
}

image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "sha256:abababababababababababababababababababababababababababababababab"
  }
  machine {
    cpus = var.cpus
  }
  output "qcow2" {
    path = "dist/base.qcow2"
  }
}
