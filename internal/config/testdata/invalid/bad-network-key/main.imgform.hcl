image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "sha256:abababababababababababababababababababababababababababababababab"
  }
  network "50-default" {
    network = { dhcp = "ipv4" }
  }
  output "qcow2" {
    path = "dist/base.qcow2"
  }
}
