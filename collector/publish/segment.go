package publish

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Segment file layout (all integers little-endian):
//
//	header  8 bytes   "KSSPOOL1"
//	entry   4 bytes   payload length n (1 ≤ n ≤ maxEntry)
//	        4 bytes   CRC-32C (Castagnoli) of the payload
//	        n bytes   payload (see encodePayload)
//	entry   …
//
// Entries are only ever appended. A crash can leave the last entry of the
// last segment incomplete (a "torn tail"): its length runs past the end of
// the file, or its CRC does not match what was half-written. Both are found
// by scanning and cut off by truncation — such an entry's Publish never
// returned nil, so nothing acknowledged is lost. Length 0 is invalid on
// purpose: a file extended with zeros by a crash (some filesystems do that)
// would otherwise read as a run of valid empty entries.
const (
	segMagic        = "KSSPOOL1"
	segHeaderSize   = int64(len(segMagic))
	entryHeaderSize = 8
	// maxEntry caps a payload so that a corrupt length can never make the
	// reader allocate more than this; real entries are far smaller (the
	// configuration keeps records below publish.batch_bytes).
	maxEntry = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Decoding outcomes that are not I/O errors.
var (
	// errShortEntry: b ends inside the entry (header or payload). At the end
	// of the last segment this is a torn tail; inside a read buffer it just
	// means "read more".
	errShortEntry = errors.New("spool: incomplete entry")
	// errCorruptEntry: the entry can never be valid (bad length or CRC).
	errCorruptEntry = errors.New("spool: corrupt entry")
)

// appendEntry appends the framed payload to dst.
func appendEntry(dst, payload []byte) []byte {
	var h [entryHeaderSize]byte
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[4:8], crc32.Checksum(payload, castagnoli))
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// entryLen returns the payload length announced by an entry header, or
// errCorruptEntry if it is out of range.
func entryLen(h []byte) (int, error) {
	n := binary.LittleEndian.Uint32(h[0:4])
	if n == 0 || n > maxEntry {
		return 0, fmt.Errorf("%w: length %d", errCorruptEntry, n)
	}
	return int(n), nil
}

// decodeEntry decodes the entry at the start of b. It returns the payload
// (a sub-slice of b, not a copy) and the entry's total size.
func decodeEntry(b []byte) (payload []byte, size int, err error) {
	if len(b) < entryHeaderSize {
		return nil, 0, errShortEntry
	}
	n, err := entryLen(b)
	if err != nil {
		return nil, 0, err
	}
	if len(b)-entryHeaderSize < n {
		return nil, 0, errShortEntry
	}
	payload = b[entryHeaderSize : entryHeaderSize+n]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[4:8]) {
		return nil, 0, fmt.Errorf("%w: CRC mismatch", errCorruptEntry)
	}
	return payload, entryHeaderSize + n, nil
}

// checkSegmentHeader reports whether the file starts with the segment magic.
func checkSegmentHeader(r io.ReaderAt) error {
	var h [segHeaderSize]byte
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return fmt.Errorf("read segment header: %w", err)
	}
	if string(h[:]) != segMagic {
		return fmt.Errorf("not a kubesift spool segment (header %q)", h[:])
	}
	return nil
}

// scanSegment walks the entries of a segment between the header and size,
// verifying each CRC, and calls fn (if not nil) with each entry's offset and
// payload (valid only during the call). It returns the offset just past the
// last valid entry and why scanning stopped early: nil when every byte up to
// size was valid, errShortEntry for a torn tail, errCorruptEntry (wrapped)
// for damage, or an I/O error. Memory use is bounded by one entry.
func scanSegment(r io.ReaderAt, size int64, fn func(off int64, payload []byte) error) (int64, error) {
	off := segHeaderSize
	if size < off {
		return 0, errShortEntry
	}
	br := bufio.NewReaderSize(io.NewSectionReader(r, off, size-off), 64<<10)
	var h [entryHeaderSize]byte
	var buf []byte
	for off < size {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return off, shortOr(err)
		}
		n, err := entryLen(h[:])
		if err != nil {
			return off, err
		}
		if int64(n) > size-off-entryHeaderSize {
			// Past the end of the file: torn, not corrupt — the writer
			// died between the header and the end of the payload.
			return off, errShortEntry
		}
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return off, shortOr(err)
		}
		if crc32.Checksum(buf, castagnoli) != binary.LittleEndian.Uint32(h[4:8]) {
			return off, fmt.Errorf("%w: CRC mismatch at offset %d", errCorruptEntry, off)
		}
		if fn != nil {
			if err := fn(off, buf); err != nil {
				return off, err
			}
		}
		off += entryHeaderSize + int64(n)
	}
	return off, nil
}

// skipEntries walks entry headers only (no payload reads, no CRC) from the
// header to target and reports whether target falls on an entry boundary.
// It validates a checkpoint offset cheaply.
func skipEntries(r io.ReaderAt, size, target int64) bool {
	off := segHeaderSize
	var h [entryHeaderSize]byte
	for off < target && off < size {
		if _, err := r.ReadAt(h[:], off); err != nil {
			return false
		}
		n, err := entryLen(h[:])
		if err != nil {
			return false
		}
		off += entryHeaderSize + int64(n)
	}
	return off == target
}

func shortOr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errShortEntry
	}
	return err
}
