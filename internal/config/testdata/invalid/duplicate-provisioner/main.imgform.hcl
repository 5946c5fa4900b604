image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "sha256:abababababababababababababababababababababababababababababababab"
  }
  provision "setup" {
    inline = ["true"]
  }

  provision "setup" {
    inline = ["false"]
  }
  output "qcow2" {
    path = "dist/base.qcow2"
  }
}
