package vm

import "os"

func fileMode(m uint64) os.FileMode { return os.FileMode(m) & os.ModePerm }
