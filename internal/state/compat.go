package state

import "gitlab.com/imgform/imgform/internal/fsutil"

// WriteFileAtomic is [fsutil.WriteFileAtomic].
//
// Deprecated: use fsutil; removed once engine and fetch are switched.
var WriteFileAtomic = fsutil.WriteFileAtomic

// RemoveStaleTemps is [fsutil.RemoveStaleTemps].
//
// Deprecated: use fsutil; removed once engine and fetch are switched.
var RemoveStaleTemps = fsutil.RemoveStaleTemps
