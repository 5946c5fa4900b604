// Package state is imgform's on-disk memory: the content-addressed store of step results, the locks that let
// several imgform processes share one store, and the record of the last apply of each configuration.
//
// # Layout
//
// A store is a folder (see [DefaultDir]) laid out as:
//
//	VERSION                      layout version of the store; Open refuses a layout it does not know
//	CACHEDIR.TAG                 tells backup tools to skip the folder
//	objects/ab/<key>/meta.json   metadata of a committed object (see [Meta])
//	objects/ab/<key>/data/<name> the object's files
//	objects/ab/.tmp-<key>-<rnd>/ an object being written (see [Store.Begin]); flock(2)ed by its writer
//	objects/ab/.del-<key>-<rnd>/ an object being removed; renamed first so removal is atomic for readers
//	locks/ab/<key>.build         exclusive lock of whoever produces the object (see [Store.LockKey])
//	locks/ab/<key>.use           shared lock of whoever uses the object (see [Store.Hold]); gc skips held keys
//	locks/maintenance.lock       serialises gc and verify runs
//	locks/record-<h>.lock        optional lock of one configuration's apply (see [Store.LockRecord])
//	records/<h>.json             the record of the last apply of one configuration (see [Record])
//
// "ab" is the first byte of the key in hex; sharding keeps folders small. <h> is a hash of the configuration
// ID, so any string can be an ID. A temp folder sits next to the object it will become so that the final
// rename stays inside one folder and so that relative paths between objects (qcow2 backing files such as
// ../../../cd/<key>/data/disk.qcow2) are the same before and after the rename.
//
// # Consistency
//
// A committed object appears by one rename of a folder that already holds its fsynced files and metadata, so
// a reader sees either nothing or a whole object. Anything odd (unreadable metadata, a missing or resized
// file, a parent layer that is missing or was rebuilt with other bytes) makes [Store.Lookup] report a miss
// rather than an error: the cache is an optimisation and must never stop a build. Content hashes are checked
// by [Store.Verify], by [Object.Open]'s reader and by [Store.VerifyAll].
//
// # Locks
//
// Locks are flock(2) locks on files, so the kernel releases them when a process dies and a stale lock never
// blocks anyone. Exclusive lock files also carry a JSON description of their holder (host, PID, time,
// purpose) so that a waiter can say whom it waits for, and so that a lock left by a dead process is
// reported as taken over. The store is meant for local file systems; flock over NFS is not relied on.
package state
