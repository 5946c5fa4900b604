image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "sha256:abababababababababababababababababababababababababababababababab"
  }
  output "disk" {
    compression = "zstandard"
    path        = "dist/base.qcow2.zst"
  }
}
