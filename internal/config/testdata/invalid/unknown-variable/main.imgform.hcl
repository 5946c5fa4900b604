variable "admin_user" {
  default = "debian"
}

image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "sha256:abababababababababababababababababababababababababababababababab"
  }
  userdata {
    cloud_config = { users = [var.admn_user] }
  }
  output "qcow2" {
    path = "dist/base.qcow2"
  }
}
