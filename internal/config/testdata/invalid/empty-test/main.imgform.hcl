image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "sha256:abababababababababababababababababababababababababababababababab"
  }
  test "nginx" {
    sudo = true
  }
  output "qcow2" {
    path = "dist/base.qcow2"
  }
}
