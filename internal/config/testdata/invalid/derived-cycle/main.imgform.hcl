image "a" {
  source {
    image = image.b
  }
}

image "b" {
  source {
    image = image.a
  }
}
