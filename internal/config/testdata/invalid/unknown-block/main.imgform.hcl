image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "sha256:abababababababababababababababababababababababababababababababab"
  }
  provison "x" {
    inline = ["true"]
  }
  output "qcow2" {
    path = "dist/base.qcow2"
  }
}
