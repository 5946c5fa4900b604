image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "sha256:abababababababababababababababababababababababababababababababab"
  }
  provision "motd" {
    file {
      content     = "hello"
      destination = "etc/motd"
    }
  }
  output "qcow2" {
    path = "dist/base.qcow2"
  }
}
