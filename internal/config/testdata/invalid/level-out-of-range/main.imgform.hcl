image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "sha256:abababababababababababababababababababababababababababababababab"
  }
  output "disk" {
    compression = "zstd"
    level       = 30
    path        = "dist/base.qcow2.zst"
  }
}
