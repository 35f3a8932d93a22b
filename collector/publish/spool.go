package publish

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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
	// Now is the clock of the segments' start times (OldestAge); nil:
	// time.Now.
	Now func() time.Time
}

type segment struct {
	seq  uint64
	size int64 // bytes on disk that hold valid entries (header included)
	// started is when the segment's first entry was appended; for a
	// segment left by an earlier run, its file's modification time (when
	// its last entry was written: the oldest time known for sure).
	started time.Time
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
	// end is the position just past the entry: Commit(end) commits it and
	// every entry before it.
	end spoolPos
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
	if o.Now == nil {
		o.Now = time.Now
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
	s.segs = append(s.segs, segment{seq: seq, size: 0, started: s.opts.Now()})
	if _, err := f.WriteAt([]byte(segMagic), 0); err != nil {
		return f, err
	}
	s.segs[len(s.segs)-1].size = segHeaderSize
	s.diskBytes += segHeaderSize
	return f, nil
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

// OldestAge is how long the oldest segment that still holds entries has
// existed (0 when the spool is empty): the age of the oldest record waiting
// for Kafka, read at segment granularity — a partly drained segment keeps
// its start time until it is wholly acknowledged and deleted. It takes the
// lock for a slice lookup, so a scrape may call it.
func (s *spool) OldestAge() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.segs) == 0 {
		return 0
	}
	return max(s.opts.Now().Sub(s.segs[0].started), 0)
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
