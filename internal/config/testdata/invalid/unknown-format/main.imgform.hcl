image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "sha256:abababababababababababababababababababababababababababababababab"
  }
  output "disk" {
    format = "vdi"
    path   = "dist/base.vdi"
  }
}
