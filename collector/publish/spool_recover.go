// Opening a spool: finding its segments, checking each one's records, and
// cutting a torn or damaged tail so the readable prefix is kept.

package publish

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// recover loads the segments and the checkpoint, cutting a torn tail off the
// last segment.
func (s *spool) recover() error {
	dir := s.opts.Dir
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			// A checkpoint whose rename never happened.
			os.Remove(filepath.Join(dir, name))
			continue
		}
		seqText, ok := strings.CutSuffix(name, segSuffix)
		if !ok {
			continue
		}
		seq, err := strconv.ParseUint(seqText, 10, 64)
		if err != nil || seq == 0 {
			return fmt.Errorf("spool: unexpected file %s in %s", name, dir)
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.segs = append(s.segs, segment{seq: seq, size: info.Size(), started: info.ModTime()})
	}
	slices.SortFunc(s.segs, func(a, b segment) int { return cmpU64(a.seq, b.seq) })

	// Every segment but the last was fsynced before the next one was
	// started (fsync: always and interval), so only the last one can be
	// torn. It is scanned in full; earlier ones are checked as they drain.
	kept := s.segs[:0]
	for i, sg := range s.segs {
		path := s.segPath(sg.seq)
		last := i == len(s.segs)-1
		if sg.size < segHeaderSize {
			// Created but the header never made it: nothing inside.
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("spool: %w", err)
			}
			continue
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		if err := checkSegmentHeader(f); err != nil {
			f.Close()
			// Not ours: refuse rather than delete someone's data.
			return fmt.Errorf("spool: %s: %w", path, err)
		}
		if last {
			end, serr := scanSegment(f, sg.size, nil)
			if serr != nil && !errors.Is(serr, errShortEntry) && !errors.Is(serr, errCorruptEntry) {
				f.Close()
				return fmt.Errorf("spool: scan %s: %w", path, serr)
			}
			if end < sg.size {
				cut := sg.size - end
				s.opts.Logger.Warn("spool: cutting an incomplete entry off the last segment (left by a crash; its Publish never succeeded)",
					"segment", path, "bytes", cut, "cause", serr)
				if err := f.Truncate(end); err != nil {
					f.Close()
					return fmt.Errorf("spool: truncate %s: %w", path, err)
				}
				if err := f.Sync(); err != nil {
					f.Close()
					return fmt.Errorf("spool: sync %s: %w", path, err)
				}
				s.opts.OnTruncate("torn_tail", cut)
				sg.size = end
			}
		}
		f.Close()
		if sg.size == segHeaderSize {
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("spool: %w", err)
			}
			continue
		}
		kept = append(kept, sg)
	}
	s.segs = kept
	// Recovered segments are all sealed: new appends start a new segment,
	// so a segment is only ever appended to by the process that created it.
	s.nextSeq = 1
	if n := len(s.segs); n > 0 {
		s.nextSeq = s.segs[n-1].seq + 1
	}
	for _, sg := range s.segs {
		s.diskBytes += sg.size
	}
	s.committed = s.loadCheckpoint()
	s.read = s.committed
	s.opts.OnChange(s.diskBytes, len(s.segs))
	return nil
}

// markDamaged handles a damaged entry at off inside data that was written
// completely. There is no way to find the next entry boundary, so the rest
// of the segment is lost: deliberate, logged and counted once (the segment's
// readable limit is lowered, so re-reads after a rewind do not count again).
func (s *spool) markDamaged(seq uint64, off, limit int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut == nil {
		s.cut = map[uint64]int64{}
	}
	s.cut[seq] = off
	if seq == s.activeSeq() {
		// Seal a damaged active segment so new appends land where they
		// can be read.
		s.active.Close()
		s.active = nil
	}
	s.opts.Logger.Error("spool: damaged entry; dropping the rest of the segment",
		"segment", s.segPath(seq), "offset", off, "bytes_lost", limit-off, "error", err)
	s.opts.OnTruncate("corrupt", limit-off)
}
