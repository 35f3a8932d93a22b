// The spool's reader side: handing out entries past the read cursor and
// rewinding to the committed position after a failed send.

package publish

import (
	"errors"
	"fmt"
	"os"
)

// Read hands out the next entries after the read cursor, up to about
// maxBytes (at least one entry), and the position just past them (pass it to
// Commit once they are acknowledged). It returns no entries when everything
// has been read. Only the drainer goroutine calls it; on an error it returns
// no entries and the caller rewinds.
func (s *spool) Read(maxBytes int64) ([]spoolEntry, spoolPos, error) {
	var out []spoolEntry
	var got int64
	for got < maxBytes {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, spoolPos{}, errSpoolClosed
		}
		// Find the segment of the cursor; if it was deleted (drained
		// completely while the tail moved on), continue at the next one.
		i, ok := s.segIndex(s.read.seq)
		if !ok {
			if i >= len(s.segs) {
				pos := s.read
				s.mu.Unlock()
				return out, pos, nil
			}
			s.read = spoolPos{seq: s.segs[i].seq, off: segHeaderSize}
		}
		seq, off, limit := s.read.seq, s.read.off, s.limit(i)
		sealed := i < len(s.segs)-1 || seq != s.activeSeq()
		s.mu.Unlock()

		if off >= limit {
			if !sealed {
				break // caught up with the writer
			}
			s.advanceTo(seq)
			continue
		}
		entries, next, err := s.readSegment(seq, off, limit, maxBytes-got)
		if err != nil && !errors.Is(err, errCorruptEntry) {
			return nil, spoolPos{}, err
		}
		if err != nil {
			s.markDamaged(seq, next, limit, err)
		}
		out = append(out, entries...)
		for _, e := range entries {
			got += entryHeaderSize + int64(len(e.payload))
		}
		s.mu.Lock()
		s.read = spoolPos{seq: seq, off: next}
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return out, s.read, nil
}

// limit is how far segs[i] can be read: its size, or the offset of damage.
func (s *spool) limit(i int) int64 {
	sg := s.segs[i]
	if c, ok := s.cut[sg.seq]; ok && c < sg.size {
		return c
	}
	return sg.size
}

// activeSeq is the seq of the segment open for appends, or 0.
func (s *spool) activeSeq() uint64 {
	if s.active == nil || len(s.segs) == 0 {
		return 0
	}
	return s.segs[len(s.segs)-1].seq
}

// advanceTo moves the read cursor to the start of the segment after seq
// (or to where the next new segment will start).
func (s *spool) advanceTo(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.segIndex(seq)
	if ok {
		i++
	}
	if i < len(s.segs) {
		s.read = spoolPos{seq: s.segs[i].seq, off: segHeaderSize}
	} else {
		s.read = spoolPos{seq: s.nextSeq, off: segHeaderSize}
	}
}

// readSegment reads entries of one segment from off (an entry boundary) up
// to limit, about budget bytes. It returns the offset after the last entry.
func (s *spool) readSegment(seq uint64, off, limit, budget int64) ([]spoolEntry, int64, error) {
	if s.rfile == nil || s.rfileSeq != seq {
		if s.rfile != nil {
			s.rfile.Close()
			s.rfile = nil
		}
		f, err := os.Open(s.segPath(seq))
		if err != nil {
			return nil, off, fmt.Errorf("spool read: %w", err)
		}
		s.rfile, s.rfileSeq = f, seq
	}
	n := min(limit-off, budget)
	if n < entryHeaderSize {
		n = min(limit-off, entryHeaderSize)
	}
	buf := make([]byte, n)
	if _, err := s.rfile.ReadAt(buf, off); err != nil {
		return nil, off, fmt.Errorf("spool read %s: %w", s.segPath(seq), err)
	}
	var out []spoolEntry
	p := 0
	for p < len(buf) {
		payload, size, err := decodeEntry(buf[p:])
		if errors.Is(err, errShortEntry) {
			if len(out) > 0 {
				break // the rest is for the next Read
			}
			// The first entry is larger than the buffer: read it alone.
			if len(buf)-p < entryHeaderSize {
				return nil, off, fmt.Errorf("%w: segment ends inside an entry header", errCorruptEntry)
			}
			ln, lerr := entryLen(buf[p:])
			if lerr != nil {
				return nil, off, lerr
			}
			if off+entryHeaderSize+int64(ln) > limit {
				return nil, off, fmt.Errorf("%w: entry runs past the written end", errCorruptEntry)
			}
			big := make([]byte, entryHeaderSize+ln)
			if _, err := s.rfile.ReadAt(big, off); err != nil {
				return nil, off, fmt.Errorf("spool read %s: %w", s.segPath(seq), err)
			}
			payload, size, err = decodeEntry(big)
			if err != nil {
				return nil, off, err
			}
			return []spoolEntry{{payload: payload, end: spoolPos{seq: seq, off: off + int64(size)}}}, off + int64(size), nil
		}
		if err != nil {
			return out, off + int64(p), err
		}
		p += size
		out = append(out, spoolEntry{payload: payload, end: spoolPos{seq: seq, off: off + int64(p)}})
	}
	return out, off + int64(p), nil
}

// Rewind moves the read cursor back to the committed position, so that the
// entries handed out since are read again.
func (s *spool) Rewind() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.read = s.committed
}
