image "base" {
  source {
    url = "https://example.org/disk.qcow2"
  }
  output "qcow2" {
    path = "dist/base.qcow2"
  }
}
