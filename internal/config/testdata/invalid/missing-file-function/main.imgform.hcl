image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "sha256:abababababababababababababababababababababababababababababababab"
  }
  userdata {
    content = file("user-data.yaml")
  }
  output "qcow2" {
    path = "dist/base.qcow2"
  }
}
