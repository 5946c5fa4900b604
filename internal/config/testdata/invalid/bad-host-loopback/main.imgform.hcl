image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "sha256:abababababababababababababababababababababababababababababababab"
  }
  machine {
    host_loopback = "sometimes"
  }
  output "qcow2" {
    path = "dist/base.qcow2"
  }
}
