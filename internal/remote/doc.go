// Package remote is imgform's shared step cache on an OCI registry (Docker Distribution, Harbor, GitLab's,
// Zot, ...): machines that start empty, such as CI runners, find there the step results another machine
// built, and add theirs.
//
// # Format
//
// A remote cache is one repository, named oci://HOST[:PORT]/REPOSITORY (see [Parse]). Each object of a
// store is one artifact in it:
//
//	tag          step-<key in hex>                           (see [Tag])
//	manifest     OCI image manifest, artifactType application/vnd.imgform.step.v1
//	  config     meta.json of the object, application/vnd.imgform.meta.v1+json, also embedded in the
//	             manifest ("data") so that a lookup is one request
//	  layers     one per file, zstd-compressed, application/vnd.imgform.file.v1+zstd, annotated with the
//	             file's name (org.opencontainers.image.title), uncompressed size, sha256 and mode
//	  annotations org.opencontainers.image.created (the object's), and com.gitlab.imgform.{key,kind,image,
//	             step,parent,version}
//
// Files are not repacked: a layer's qcow2 overlay names its backing file by a relative path into its parent
// object's folder, which is valid again once the parent is pulled into another store of the same layout.
//
// # Trust
//
// What comes from a registry is checked before it is used: manifests and meta.json are bounded in size,
// blobs are verified against their digest while they stream, meta.json must be consistent and belong to the
// key asked for, file names must be single path elements, and the store's Import re-hashes every file
// against meta.json before it commits. Anything that fails is an error wrapping state.ErrCorrupt and leaves
// nothing behind. A registry that serves a consistent object under a wrong key cannot be detected here: the
// cache trusts whoever can write to the repository, as a build cache must.
//
// # Concurrency
//
// Pushes of one key by several machines are harmless: blobs are content-addressed, the tag is written last
// and only once every blob is there, and any manifest it ends up on is complete. A push cut short leaves
// blobs without a tag, which speed up the next attempt and are otherwise the registry's garbage.
package remote
