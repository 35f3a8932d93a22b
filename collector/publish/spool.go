package publish

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kubesift/kubesift/internal/config"
)

// The spool is a FIFO of encoded messages in numbered segment files:
//
//	<dir>/LOCK                       flock'ed while a publisher owns the dir
//	<dir>/00000000000000000007.seg   oldest segment (being drained)
//	<dir>/00000000000000000008.seg   …
//	<dir>/checkpoint                 read position: segment seq + offset
//
// One writer (Append, called by Publish) adds at the tail; one reader (the
// drainer goroutine: Read, Commit, Rewind) takes from the head. Read hands
// out entries and advances a read cursor; Commit — after Kafka acknowledged
// them — moves the committed position, deletes segments that are wholly
// behind it and writes the checkpoint (by atomic rename), so a restart
// resumes there instead of re-sending whole segments. Rewind returns the read
// cursor to the committed position after a failed send.
//
// Disk use is bounded by MaxBytes (the sum of the segment files): an Append
// that would exceed it fails as a whole with errSpoolFull, never partially.

// errSpoolFull: the append would take the spool past max_bytes.
var errSpoolFull = errors.New("spool is full")

// errSpoolClosed: the spool was closed (publisher shutting down).
var errSpoolClosed = errors.New("spool is closed")

const (
	segSuffix      = ".seg"
	checkpointName = "checkpoint"
	checkpointSize = 4 + 8 + 8 + 4 // magic, seq, offset, CRC-32C
	checkpointMgc  = "KSCP"
	lockName       = "LOCK"
)

// spoolOptions configures openSpool; see config.SpoolConfig.
type spoolOptions struct {
	Dir           string
	MaxBytes      int64
	SegmentBytes  int64
	Fsync         string
	FsyncInterval time.Duration
	Logger        *slog.Logger
	// OnChange is called (under the spool lock; it must not call back) with
	// the bytes on disk and the number of segments after every change.
	OnChange func(bytes int64, segments int)
	// OnTruncate is called when bytes are cut from the spool: a torn tail
	// found at open ("torn_tail": never acknowledged, so not a loss) or a
	// damaged entry met while draining ("corrupt": acknowledged data lost,
	// which only a disk fault or fsync=never with a host crash can cause).
	OnTruncate func(cause string, bytes int64)
}

type segment struct {
	seq  uint64
	size int64 // bytes on disk that hold valid entries (header included)
}

// spoolPos is a position in the spool: the offset of the next entry of
// segment seq.
type spoolPos struct {
	seq uint64
	off int64
}

// spoolEntry is one entry handed out by Read. payload aliases a buffer that
// belongs to the caller from then on.
type spoolEntry struct {
	payload []byte
}

type spool struct {
	opts spoolOptions
	lock *os.File

	mu        sync.Mutex
	segs      []segment // ascending seq; the last one may be active
	active    *os.File  // tail segment open for writing, or nil: next Append starts a new one
	nextSeq   uint64
	diskBytes int64
	wbuf      []byte // reused encoding buffer for Append
	dirty     bool   // written but not fsynced (fsync: interval)
	closed    bool
	read      spoolPos         // next entry to hand out (reader cursor)
	committed spoolPos         // everything before this is acknowledged
	cut       map[uint64]int64 // segment seq -> offset of damage (read no further)

	// Used by the reader goroutine only.
	rfile    *os.File
	rfileSeq uint64

	stopSync chan struct{}
	syncDone chan struct{}
}

func openSpool(o spoolOptions) (*spool, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.OnChange == nil {
		o.OnChange = func(int64, int) {}
	}
	if o.OnTruncate == nil {
		o.OnTruncate = func(string, int64) {}
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(o.Dir, lockName), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	// Two publishers appending to one directory would interleave segments
	// and delete each other's data: refuse the second one.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool %s is in use by another process: %w", o.Dir, err)
	}
	s := &spool{opts: o, lock: lock}
	if err := s.recover(); err != nil {
		s.closeFiles()
		return nil, err
	}
	if o.Fsync == config.SpoolFsyncInterval {
		s.stopSync = make(chan struct{})
		s.syncDone = make(chan struct{})
		go s.syncLoop()
	}
	return s, nil
}

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
		s.segs = append(s.segs, segment{seq: seq, size: info.Size()})
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

func (s *spool) segPath(seq uint64) string {
	return filepath.Join(s.opts.Dir, fmt.Sprintf("%020d%s", seq, segSuffix))
}

func (s *spool) segIndex(seq uint64) (int, bool) {
	return slices.BinarySearchFunc(s.segs, seq, func(sg segment, seq uint64) int { return cmpU64(sg.seq, seq) })
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Append adds the payloads in order, all or none. With fsync: always it
// returns only after the data is on disk.
func (s *spool) Append(payloads [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errSpoolClosed
	}
	need := int64(0)
	for _, p := range payloads {
		need += entryHeaderSize + int64(len(p))
	}
	// Every segment this append may start adds a header: reserve for as
	// many as it can start, so that max_bytes is a true bound.
	need += segHeaderSize * (2 + need/max(s.opts.SegmentBytes-segHeaderSize, 1))
	if s.diskBytes+need > s.opts.MaxBytes {
		return errSpoolFull
	}

	// Remember the state so that a failed write (disk full, I/O error)
	// leaves the spool exactly as it was: the caller retries the batch and
	// a half-appended batch would be re-sent twice.
	origSegs := len(s.segs)
	var origSize int64
	if s.active != nil {
		origSize = s.segs[origSegs-1].size
	}
	origActive := s.active
	origBytes := s.diskBytes
	var created []*os.File

	err := s.appendLocked(payloads, &created)
	if err == nil && s.opts.Fsync == config.SpoolFsyncAlways && s.active != nil {
		err = s.active.Sync()
		if err == nil && len(created) > 0 {
			// The new segment's directory entry must survive too.
			err = syncDir(s.opts.Dir)
		}
	}
	if err != nil {
		// A roll closed the original active segment if the active file
		// changed; it must then be reopened to be cut back and reused.
		reopen := s.active != origActive
		for _, f := range created {
			name := f.Name()
			f.Close()
			os.Remove(name)
		}
		s.segs = s.segs[:origSegs]
		s.active = origActive
		if origActive != nil {
			seg := &s.segs[origSegs-1]
			if reopen {
				f, oerr := os.OpenFile(s.segPath(seg.seq), os.O_WRONLY, 0)
				if oerr != nil {
					f = nil // appends will start a new segment
				}
				s.active = f
			}
			if s.active != nil {
				// Best effort: should truncation fail too, the reader
				// never reads past seg.size, so the partial bytes are
				// overwritten by the next append.
				s.active.Truncate(origSize)
			}
			seg.size = origSize
		}
		s.nextSeq -= uint64(len(created))
		s.diskBytes = origBytes
		return fmt.Errorf("spool append: %w", err)
	}
	if s.opts.Fsync == config.SpoolFsyncInterval {
		s.dirty = true
	}
	s.opts.OnChange(s.diskBytes, len(s.segs))
	return nil
}

// appendLocked writes the entries, rolling segments as they fill. Newly
// created files are recorded in created for rollback.
func (s *spool) appendLocked(payloads [][]byte, created *[]*os.File) error {
	buf := s.wbuf[:0]
	defer func() {
		// Keep a modest buffer for the next call; drop a huge one.
		if cap(buf) <= 4<<20 {
			s.wbuf = buf[:0]
		}
	}()
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		sg := &s.segs[len(s.segs)-1]
		if _, err := s.active.WriteAt(buf, sg.size); err != nil {
			return err
		}
		sg.size += int64(len(buf))
		s.diskBytes += int64(len(buf))
		buf = buf[:0]
		return nil
	}
	for _, p := range payloads {
		e := int64(entryHeaderSize + len(p))
		if s.active == nil || (s.pendingSize(len(buf))+e > s.opts.SegmentBytes && s.pendingSize(len(buf)) > segHeaderSize) {
			if err := flush(); err != nil {
				return err
			}
			f, err := s.roll()
			if f != nil {
				*created = append(*created, f)
			}
			if err != nil {
				return err
			}
		}
		buf = appendEntry(buf, p)
		// Bound the buffer for very large batches.
		if len(buf) >= 1<<20 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// pendingSize is the active segment's size once buffered bytes are written.
func (s *spool) pendingSize(buffered int) int64 {
	return s.segs[len(s.segs)-1].size + int64(buffered)
}

// roll seals the active segment (fsync first, so that only the last segment
// can ever be torn) and starts a new one. The new file is returned even on
// error so that Append can remove it.
func (s *spool) roll() (*os.File, error) {
	if s.active != nil {
		if s.opts.Fsync != config.SpoolFsyncNever {
			if err := s.active.Sync(); err != nil {
				return nil, err
			}
		}
		// The sealed file stays in segs; only the write handle goes. A
		// close error after a successful sync changes nothing on disk.
		s.active.Close()
		s.active = nil
	}
	seq := s.nextSeq
	f, err := createSegment(s.segPath(seq))
	if err != nil {
		return nil, err
	}
	s.nextSeq++
	s.active = f
	s.segs = append(s.segs, segment{seq: seq, size: 0})
	if _, err := f.WriteAt([]byte(segMagic), 0); err != nil {
		return f, err
	}
	s.segs[len(s.segs)-1].size = segHeaderSize
	s.diskBytes += segHeaderSize
	return f, nil
}

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
			return []spoolEntry{{payload: payload}}, off + int64(size), nil
		}
		if err != nil {
			return out, off + int64(p), err
		}
		out = append(out, spoolEntry{payload: payload})
		p += size
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

// Empty reports whether no entry is waiting for acknowledgement.
func (s *spool) Empty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.segs) == 0
}

// Unread reports whether entries exist past the read cursor.
func (s *spool) Unread() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.segs) == 0 {
		return false
	}
	last := len(s.segs) - 1
	return s.read.seq < s.segs[last].seq || (s.read.seq == s.segs[last].seq && s.read.off < s.limit(last))
}

// Stats returns the bytes on disk and the number of segments.
func (s *spool) Stats() (bytes int64, segments int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.diskBytes, len(s.segs)
}

// syncLoop fsyncs the active segment every FsyncInterval (fsync: interval).
func (s *spool) syncLoop() {
	defer close(s.syncDone)
	t := time.NewTicker(s.opts.FsyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopSync:
			return
		case <-t.C:
		}
		s.mu.Lock()
		if s.dirty && s.active != nil {
			if err := s.active.Sync(); err != nil {
				s.opts.Logger.Error("spool: fsync", "error", err)
			} else {
				s.dirty = false
			}
		}
		s.mu.Unlock()
	}
}

// Close syncs and closes the files, writes the checkpoint and releases the
// directory lock. The reader must have stopped.
func (s *spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var err error
	if s.active != nil && s.opts.Fsync != config.SpoolFsyncNever {
		err = s.active.Sync()
	}
	if len(s.segs) > 0 {
		if cerr := s.writeCheckpoint(s.committed); err == nil {
			err = cerr
		}
	}
	s.mu.Unlock()
	if s.stopSync != nil {
		close(s.stopSync)
		<-s.syncDone
	}
	s.closeFiles()
	if err != nil {
		return fmt.Errorf("spool close: %w", err)
	}
	return nil
}

func (s *spool) closeFiles() {
	if s.active != nil {
		s.active.Close()
		s.active = nil
	}
	if s.rfile != nil {
		s.rfile.Close()
		s.rfile = nil
	}
	if s.lock != nil {
		// Closing the descriptor releases the flock.
		s.lock.Close()
		s.lock = nil
	}
}

// createSegment creates a new segment file; a variable so that tests can
// make it fail.
var createSegment = func(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
