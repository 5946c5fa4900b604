// Package fsutil holds the file helpers every part of imgform shares, so that each exists once:
//
//   - [CreateAtomic] and [WriteFileAtomic] write a file that appears at its path only when complete and
//     durable: a temp file in the same folder, Sync, Close with its error checked, Chmod, Rename, then a
//     fsync of the folder (restic's local backend does the same). A crash leaves a hidden
//     ".<name>.tmp-*" file next to the path, never a part of the file under it; the writer flocks its
//     temp file while it lives, so [RemoveStaleTemps] can tell a dead writer's leftover from a live one.
//   - [SyncFile] and [SyncDir] fsync a file or a folder, tolerating file systems that have no fsync.
//   - [Flock] and [TryFlock] wrap flock(2) with the EINTR retry it needs.
//   - [HashFile] and [Hash] compute a SHA-256 and size in chunks, looking at ctx between two chunks.
//   - [TailBuffer] keeps the end of a tool's output for an error message.
//
// The package knows nothing about the store or the steps; it is Linux-first (flock, fsync of folders)
// like the rest of imgform.
package fsutil
