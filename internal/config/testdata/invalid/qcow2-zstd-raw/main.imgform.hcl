image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "sha256:abababababababababababababababababababababababababababababababab"
  }
  output "disk" {
    format      = "raw"
    compression = "qcow2-zstd"
    path        = "dist/base.raw"
  }
}
