// The committed position: Commit moves it and deletes drained segments;
// the checkpoint file (written by atomic rename) carries it across restarts.

package publish

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kubesift/kubesift/internal/config"
)

// loadCheckpoint returns the position to resume reading at: the checkpoint
// if it is intact and points at an entry boundary of an existing segment,
// else the start of the oldest segment (re-sending is allowed, skipping is
// not).
func (s *spool) loadCheckpoint() spoolPos {
	start := spoolPos{seq: s.nextSeq, off: segHeaderSize}
	if len(s.segs) > 0 {
		start.seq = s.segs[0].seq
	}
	b, err := os.ReadFile(filepath.Join(s.opts.Dir, checkpointName))
	if err != nil {
		return start
	}
	if len(b) != checkpointSize || string(b[:4]) != checkpointMgc ||
		crc32.Checksum(b[:checkpointSize-4], castagnoli) != binary.LittleEndian.Uint32(b[checkpointSize-4:]) {
		s.opts.Logger.Warn("spool: ignoring a damaged checkpoint; draining from the oldest segment")
		return start
	}
	pos := spoolPos{seq: binary.LittleEndian.Uint64(b[4:12]), off: int64(binary.LittleEndian.Uint64(b[12:20]))}
	i, ok := s.segIndex(pos.seq)
	if !ok || i != 0 {
		// Its segment is gone (fully drained) or it lags behind: start over
		// at the oldest segment.
		return start
	}
	f, err := os.Open(s.segPath(pos.seq))
	if err != nil {
		return start
	}
	defer f.Close()
	if pos.off < segHeaderSize || pos.off > s.segs[0].size || !skipEntries(f, s.segs[0].size, pos.off) {
		s.opts.Logger.Warn("spool: checkpoint is not at an entry boundary; draining its segment from the start", "segment", pos.seq, "offset", pos.off)
		return start
	}
	return pos
}

// Commit records that every entry before pos is acknowledged: segments wholly
// behind it are deleted and the checkpoint is written.
func (s *spool) Commit(pos spoolPos) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errSpoolClosed
	}
	s.committed = pos
	removed := 0
	for len(s.segs) > 0 {
		sg := s.segs[0]
		if sg.seq > pos.seq || (sg.seq == pos.seq && pos.off < s.limit(0)) {
			break
		}
		if sg.seq == s.activeSeq() {
			// Drained up to the writer: the next Append starts afresh.
			s.active.Close()
			s.active = nil
		}
		if s.rfile != nil && s.rfileSeq == sg.seq {
			s.rfile.Close()
			s.rfile = nil
		}
		if err := os.Remove(s.segPath(sg.seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spool: delete drained segment: %w", err)
		}
		s.diskBytes -= sg.size
		delete(s.cut, sg.seq)
		s.segs = s.segs[1:]
		removed++
	}
	if len(s.segs) == 0 {
		// Empty: both cursors wait at the start of the next segment.
		s.committed = spoolPos{seq: s.nextSeq, off: segHeaderSize}
		s.read = s.committed
		os.Remove(filepath.Join(s.opts.Dir, checkpointName))
	} else {
		if s.committed.seq < s.segs[0].seq {
			s.committed = spoolPos{seq: s.segs[0].seq, off: segHeaderSize}
		}
		if err := s.writeCheckpoint(s.committed); err != nil {
			// Only costs re-sends after a restart.
			s.opts.Logger.Warn("spool: write checkpoint", "error", err)
		}
	}
	if removed > 0 {
		s.opts.OnChange(s.diskBytes, len(s.segs))
	}
	return nil
}

// writeCheckpoint stores pos by writing a temporary file and renaming it
// over the old one, so a crash leaves either the old or the new checkpoint.
func (s *spool) writeCheckpoint(pos spoolPos) error {
	var b [checkpointSize]byte
	copy(b[:4], checkpointMgc)
	binary.LittleEndian.PutUint64(b[4:12], pos.seq)
	binary.LittleEndian.PutUint64(b[12:20], uint64(pos.off))
	binary.LittleEndian.PutUint32(b[20:24], crc32.Checksum(b[:20], castagnoli))
	final := filepath.Join(s.opts.Dir, checkpointName)
	tmp := final + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(b[:])
	if err == nil && s.opts.Fsync != config.SpoolFsyncNever {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, final)
}
