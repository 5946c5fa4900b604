variable "admin_user" {
  type = string
}

image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "sha256:abababababababababababababababababababababababababababababababab"
  }
  userdata {
    cloud_config = { users = [var.admin_user] }
  }
  output "qcow2" {
    path = "dist/base.qcow2"
  }
}
