package seed

import (
	"encoding/binary"
	"fmt"
)

// The System Use Sharing Protocol (IEEE P1281) entries of directory records, and the two Rock Ridge
// (IEEE P1282) entries normalize rewrites: TF (times) and PX (mode, links, owner).

// spSkip returns the skip length of an SP entry at the start of su, or 0 when there is none.
func spSkip(su []byte) int {
	if len(su) >= 7 && su[0] == 'S' && su[1] == 'P' && su[4] == 0xBE && su[5] == 0xEF {
		return int(su[6])
	}
	return 0
}

// patchSUSP rewrites the TF and PX entries in b and returns the continuation areas its CE entries name.
func patchSUSP(b []byte) ([]area, error) {
	var cont []area
	for pos := 0; pos+4 <= len(b); {
		sig := string(b[pos : pos+2])
		l := int(b[pos+2])
		if l == 0 {
			break // padding
		}
		if l < 4 || pos+l > len(b) {
			return nil, fmt.Errorf("SUSP entry %q: bad length %d", sig, l)
		}
		e := b[pos : pos+l]
		switch sig {
		case "ST":
			return cont, nil
		case "CE":
			if l < 28 {
				return nil, fmt.Errorf("CE entry too short: %d", l)
			}
			loc := binary.LittleEndian.Uint32(e[4:])
			off := binary.LittleEndian.Uint32(e[12:])
			size := binary.LittleEndian.Uint32(e[20:])
			// SUSP keeps a continuation area inside one logical block.
			if uint64(off)+uint64(size) > blockSize {
				return nil, fmt.Errorf("CE entry: area of %d bytes at offset %d crosses a block", size, off)
			}
			cont = append(cont, area{off: int64(loc)*blockSize + int64(off), size: int(size)})
		case "TF":
			if err := patchTF(e); err != nil {
				return nil, err
			}
		case "PX":
			if err := patchPX(e); err != nil {
				return nil, err
			}
		}
		pos += l
	}
	return cont, nil
}

// patchTF sets every stamp of a Rock Ridge TF entry to the fixed date, in the entry's short or long form.
func patchTF(e []byte) error {
	if len(e) < 5 {
		return fmt.Errorf("TF entry too short: %d", len(e))
	}
	flags := e[4]
	stamp := fixedRecordDate[:]
	if flags&0x80 != 0 {
		stamp = fixedVDDate[:]
	}
	count := 0
	for bit := 0; bit < 7; bit++ {
		if flags&(1<<bit) != 0 {
			count++
		}
	}
	if 5+count*len(stamp) > len(e) {
		return fmt.Errorf("TF entry: %d stamps do not fit in %d bytes", count, len(e))
	}
	for i := 0; i < count; i++ {
		copy(e[5+i*len(stamp):], stamp)
	}
	return nil
}

// patchPX sets the owner and group of a Rock Ridge PX entry to root and its link count to what a tree
// without subdirectories has: 2 for a directory, 1 for anything else. The link count on the host depends
// on its file system (btrfs says 1 for every directory), so it cannot be left as found.
func patchPX(e []byte) error {
	if len(e) < 36 {
		return fmt.Errorf("PX entry too short: %d", len(e))
	}
	mode := binary.LittleEndian.Uint32(e[4:])
	nlink := uint32(1)
	if mode&modeFmtMsk == modeFmtDir {
		nlink = 2
	}
	putBoth32(e[12:], nlink)
	putBoth32(e[20:], 0) // uid
	putBoth32(e[28:], 0) // gid
	return nil
}

// putBoth32 writes v in ECMA-119 both-byte-order form: little-endian, then big-endian.
func putBoth32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b[0:], v)
	binary.BigEndian.PutUint32(b[4:], v)
}
