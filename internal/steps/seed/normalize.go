package seed

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// go-diskfs takes several fields of the image from the build host: the volume descriptor dates from the
// clock, the directory record dates and Rock Ridge times (TF) from the scratch files' inode times, in the
// host's time zone, and the Rock Ridge owner and link count (PX) from the scratch files. The inode change
// time cannot be set at all, so no choice of inputs makes two builds agree. normalize overwrites exactly
// these fields with fixed values after Finalize, which makes the image a pure function of its files:
// every date becomes the Unix epoch in UTC, the expiration date becomes "not specified", the owner becomes
// root (the guest would otherwise see the build user's uid) and the link count that of a flat tree.
//
// Offsets are those of ECMA-119 (ISO9660) and IEEE P1281/P1282 (SUSP, Rock Ridge). The walk only covers
// the root directory: a seed has no subdirectories, and normalize fails rather than leave one unpatched.

const (
	firstVDSector = 16 // volume descriptors start after the 32 KiB system area

	vdTypePrimary       = 1
	vdTypeSupplementary = 2
	vdTypeTerminator    = 255
	maxVolumeDesc       = 64 // a sane upper bound: a seed has two or three

	vdRootRecord   = 156 // the root directory record inside a volume descriptor
	vdCreation     = 813
	vdModification = 830
	vdExpiration   = 847
	vdEffective    = 864

	drLength   = 0  // directory record: total length
	drExtent   = 2  // location of the extent, little-endian half of a both-endian uint32
	drDataLen  = 10 // length of the extent, little-endian half
	drDate     = 18 // 7-byte recording date
	drFlags    = 25
	drNameLen  = 32
	drName     = 33
	drFlagDir  = 0x02
	drMinSize  = 34
	maxCEAreas = 256            // bounds a corrupt, looping continuation chain
	maxRootDir = 16 * blockSize // a seed's root directory fits in one block; this bounds a corrupt length
	modeFmtDir = 0o040000
	modeFmtMsk = 0o170000
)

// fixedRecordDate is 1970-01-01 00:00:00 UTC in the 7-byte form of directory records and short TF stamps.
var fixedRecordDate = [7]byte{70, 1, 1, 0, 0, 0, 0}

// fixedVDDate is the same instant in the 17-byte form of volume descriptors and long TF stamps.
var fixedVDDate = [17]byte{'1', '9', '7', '0', '0', '1', '0', '1', '0', '0', '0', '0', '0', '0', '0', '0', 0}

// unsetVDDate is the 17-byte form of "not specified" (ECMA-119 8.4.26.1).
var unsetVDDate = [17]byte{'0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', 0}

// image is the part of *os.File that normalize needs.
type image interface {
	io.ReaderAt
	io.WriterAt
}

// normalize rewrites the host-dependent fields of a finished ISO in img; see the comment above.
func normalize(img image) error {
	var rootLoc, rootLen uint32
	foundPrimary := false
	for i := 0; i < maxVolumeDesc; i++ {
		off := int64(firstVDSector+i) * blockSize
		vd, err := readAt(img, off, blockSize)
		if err != nil {
			return fmt.Errorf("volume descriptor %d: %w", i, err)
		}
		switch vd[0] {
		case vdTypeTerminator:
			if !foundPrimary {
				return errors.New("no primary volume descriptor")
			}
			return patchRootDir(img, rootLoc, rootLen)
		case vdTypePrimary, vdTypeSupplementary:
			copy(vd[vdCreation:], fixedVDDate[:])
			copy(vd[vdModification:], fixedVDDate[:])
			copy(vd[vdExpiration:], unsetVDDate[:])
			copy(vd[vdEffective:], fixedVDDate[:])
			copy(vd[vdRootRecord+drDate:], fixedRecordDate[:])
			if vd[0] == vdTypePrimary && !foundPrimary {
				foundPrimary = true
				rootLoc = binary.LittleEndian.Uint32(vd[vdRootRecord+drExtent:])
				rootLen = binary.LittleEndian.Uint32(vd[vdRootRecord+drDataLen:])
			}
			if _, err := img.WriteAt(vd, off); err != nil {
				return fmt.Errorf("write volume descriptor %d: %w", i, err)
			}
		}
	}
	return errors.New("no volume descriptor set terminator")
}

// area is a run of bytes holding SUSP entries: a continuation area named by a CE entry.
type area struct {
	off  int64
	size int
}

// patchRootDir patches every record of the root directory extent and the continuation areas they point to.
func patchRootDir(img image, loc, size uint32) error {
	if size < drMinSize || size > maxRootDir {
		return fmt.Errorf("root directory: bad length %d", size)
	}
	off := int64(loc) * blockSize
	dir, err := readAt(img, off, int(size))
	if err != nil {
		return fmt.Errorf("root directory: %w", err)
	}
	var (
		cont []area
		skip int // SUSP bytes to skip in every record but the first, from the root's SP entry
	)
	for pos, first := 0, true; pos < len(dir); {
		recLen := int(dir[pos+drLength])
		if recLen == 0 {
			// Records never cross a block boundary: the rest of this block is padding.
			pos = (pos/blockSize + 1) * blockSize
			continue
		}
		if recLen < drMinSize || pos+recLen > len(dir) {
			return fmt.Errorf("root directory record at byte %d: bad length %d", pos, recLen)
		}
		rec := dir[pos : pos+recLen]
		nameLen := int(rec[drNameLen])
		if drName+nameLen > recLen {
			return fmt.Errorf("root directory record at byte %d: name overruns record", pos)
		}
		isDot := nameLen == 1 && (rec[drName] == 0 || rec[drName] == 1)
		if rec[drFlags]&drFlagDir != 0 && !isDot {
			return fmt.Errorf("root directory record at byte %d: unexpected subdirectory", pos)
		}
		copy(rec[drDate:], fixedRecordDate[:])
		// The system use area starts after the name and a pad byte that keeps it at an even offset.
		su := drName + nameLen
		if nameLen%2 == 0 {
			su++
		}
		if first {
			// The SP entry sits in the root's "." record, the first of the extent, and is not skipped.
			skip = spSkip(rec[min(su, recLen):])
			first = false
		} else {
			su += skip
		}
		if su < recLen {
			c, err := patchSUSP(rec[su:])
			if err != nil {
				return fmt.Errorf("root directory record at byte %d: %w", pos, err)
			}
			cont = append(cont, c...)
		}
		pos += recLen
	}
	if _, err := img.WriteAt(dir, off); err != nil {
		return fmt.Errorf("write root directory: %w", err)
	}
	// Continuation areas are read after the directory is written back, in case one shares its blocks.
	for done := 0; len(cont) > 0; done++ {
		if done >= maxCEAreas {
			return errors.New("too many SUSP continuation areas")
		}
		a := cont[0]
		cont = cont[1:]
		b, err := readAt(img, a.off, a.size)
		if err != nil {
			return fmt.Errorf("SUSP continuation area: %w", err)
		}
		more, err := patchSUSP(b)
		if err != nil {
			return fmt.Errorf("SUSP continuation area at %d: %w", a.off, err)
		}
		if _, err := img.WriteAt(b, a.off); err != nil {
			return fmt.Errorf("write SUSP continuation area: %w", err)
		}
		cont = append(cont, more...)
	}
	return nil
}

// readAt reads exactly n bytes at off.
func readAt(r io.ReaderAt, off int64, n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := r.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("read %d bytes at %d: %w", n, off, err)
	}
	return b, nil
}
