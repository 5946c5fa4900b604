image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "sha256:abababababababababababababababababababababababababababababababab"
  }
  output "qcow2" {
    path    = "dist/base.qcow2"
    publish = "registry.example.org/images/base"
  }
}
