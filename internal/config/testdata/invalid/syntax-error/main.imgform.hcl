image "base" {
  source {
    url = "https://example.org/disk.qcow2
  }
}
