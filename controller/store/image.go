package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt maps its file and faults (SIGBUS) on one shorter than its meta page says, and
// nothing in bbolt checks an image before opening it. CheckFile does, by hand, the
// little that is needed: a meta page whose checksum holds, and a file as long as that
// meta page's high-water mark. The layout is bbolt's (internal/common/meta.go).
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	pageHeaderSize = 16
	// metaSumBytes is the part of a meta page the checksum covers: magic, version,
	// page size, flags (4 bytes each), the root bucket (16), the freelist, the
	// high-water page id and the transaction id (8 each).
	metaSumBytes = 56
	// minPageSize and maxPageSize bound the page sizes accepted.
	minPageSize, maxPageSize = 1 << 10, 1 << 16
)

// ErrBadImage is wrapped by every refusal of CheckFile.
var ErrBadImage = errors.New("not a whole store image")

// CheckFile refuses a file that is not a whole bbolt image, before anything opens it.
func CheckFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	return checkImage(f, st.Size())
}

func checkImage(r io.ReaderAt, size int64) error {
	var best *boltMeta
	first, err := readMeta(r, 0)
	if err == nil {
		best = first
	}
	second := int64(4096)
	if first != nil {
		second = int64(first.pageSize)
	}
	if m, err := readMeta(r, second); err == nil && (best == nil || m.txid > best.txid) {
		best = m
	}
	if best == nil {
		return fmt.Errorf("store: %w: no valid meta page", ErrBadImage)
	}
	if need := int64(best.pgid) * int64(best.pageSize); size < need {
		return fmt.Errorf("store: %w: %d bytes, its meta page says %d", ErrBadImage, size, need)
	}
	return nil
}

type boltMeta struct {
	pageSize   uint32
	pgid, txid uint64
}

// readMeta reads and checks the meta page at off.
func readMeta(r io.ReaderAt, off int64) (*boltMeta, error) {
	buf := make([]byte, pageHeaderSize+metaSumBytes+8)
	if _, err := r.ReadAt(buf, off); err != nil {
		return nil, err
	}
	m := buf[pageHeaderSize:]
	le := binary.NativeEndian
	h := fnv.New64a()
	h.Write(m[:metaSumBytes])
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion || le.Uint64(m[metaSumBytes:]) != h.Sum64() {
		return nil, errors.New("bad meta page")
	}
	ps := le.Uint32(m[8:])
	if ps < minPageSize || ps > maxPageSize || ps&(ps-1) != 0 {
		return nil, errors.New("bad page size")
	}
	return &boltMeta{pageSize: ps, pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, nil
}
