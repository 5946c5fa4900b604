image "base" {
  machine {
    cpus = 2
  }
  output "qcow2" {
    path = "dist/base.qcow2"
  }
}
