image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "sha256:abababababababababababababababababababababababababababababababab"
  }
  machine {
    memroy = "1GiB"
  }
  output "qcow2" {
    path = "dist/base.qcow2"
  }
}
