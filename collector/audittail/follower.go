package audittail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/record"
)

// A follower runs two goroutines per path: readLoop (this file, read.go,
// rotate.go) reads and decodes batches and hands them over; commitLoop
// (commit.go, publish.go) publishes each batch and then commits its position.

const (
	readChunk = 256 << 10 // bytes per read(2)
	sigLen    = 4 << 10   // bytes before the position remembered to recognise the file (copytruncate)
	// queueLen is how many decoded batches wait in the channel to the
	// committer. None: the reader already holds one decoded batch while it
	// waits to hand it over, which overlaps decoding with publishing; each
	// one more costs ~2-5 MB at 1,000 lines of 1.5 KB.
	queueLen  = 0
	headMax   = 1 << 10 // bytes of a file's head fingerprinted in the positions file
	maxQueued = 16      // rotated-in files held open while an older one is finished
)

// batch is what the reader hands to the committer: records and dead letters
// to publish, and the position to commit once they are durable. A batch
// without records or dead letters just moves the position (a new file, a
// restart at 0).
type batch struct {
	recs []*record.Record
	dls  []collector.DeadLetter
	pos  Position
}

// follower follows one path. Its reader state is owned by the reader
// goroutine; the committer only sees batches.
type follower struct {
	t    *Tailer
	path string
	out  chan *batch
	log  *slog.Logger

	f          *os.File
	ino        uint64
	name       string // in errors: the path, or what is drained instead of it
	draining   bool   // f is no longer the file at path (rotated, or the copy of a copytruncate)
	complete   bool   // f is a copy made by copytruncate: finished at its EOF, no quiet period
	quietSince time.Time
	// queue holds the files seen at the path after f, oldest first, each
	// opened the moment it was seen: each is read from 0 once the one
	// before it is finished. So a file rotated away again before the tail
	// got to it is still read.
	queue      []tracked
	lastCheck  time.Time // of the path
	headLen    int       // fingerprint of f's first bytes (see Position)
	headHash   uint64
	off        int64  // file offset of buf[0]
	buf        []byte // bytes read and not yet batched
	cut        int    // buf[:cut] are the complete lines of the pending batch
	nlines     int    // lines in buf[:cut]
	scanned    int    // buf[cut:scanned] holds no '\n'
	batchStart time.Time
	line       int64 // lines before off (when lineKnown)
	lineKnown  bool
	sig        []byte // the last (up to sigLen) bytes read, ending at off+len(buf)
	scratch    []byte
	skipping   bool // inside a line longer than max_line_bytes
	skipHead   []byte
	skipOff    int64

	// lean: the publisher is a collector.Pipeliner, which needs no typed
	// views; records are published without them.
	lean bool

	announceOnce sync.Once
	committed    atomic.Int64
	size         atomic.Int64
	logLimit     obs.LogLimiter
}

func newFollower(t *Tailer, path string) *follower {
	_, lean := t.pub.(collector.Pipeliner)
	return &follower{t: t, path: path, name: path, out: make(chan *batch, queueLen), log: t.log.With("path", path), lean: lean}
}

func (f *follower) announce() { f.announceOnce.Do(f.t.pending.Done) }

// readLoop is the reader goroutine: read, cut into batches, decode, hand over.
func (f *follower) readLoop(ctx context.Context) {
	defer close(f.out)
	defer f.announce()
	defer func() {
		if f.f != nil {
			f.f.Close()
		}
		for _, q := range f.queue {
			q.f.Close()
		}
	}()
	if !f.start(ctx) {
		return
	}
	f.announce()
	cfg := &f.t.cfg
	full := func() bool { return f.nlines >= cfg.BatchLines || f.cut >= cfg.BatchBytes }
	for ctx.Err() == nil {
		// Publish a full batch before reading more: the buffer holds at most
		// one batch, one chunk and one partial line.
		if !f.skipping {
			f.scan()
			if f.nlines > 0 && full() {
				if !f.flush(ctx) {
					return
				}
				continue
			}
		}
		n, truncated, err := f.fill()
		if err != nil {
			f.readError("read", err)
			if !sleepCtx(ctx, cfg.PollInterval) {
				return
			}
			continue
		}
		if truncated {
			// Lines cut before were verified when read: publish them, then
			// continue in the copy (or from 0).
			if f.nlines > 0 && !f.flush(ctx) {
				return
			}
			if !f.truncated(ctx, -1) {
				return
			}
			continue
		}
		if n > 0 {
			f.quietSince = time.Time{}
			if time.Since(f.lastCheck) >= cfg.PollInterval {
				f.checkPath() // also while busy: catch every file that passes through the path
			}
		}
		if f.skipping {
			if !f.skip(ctx) {
				return
			}
		} else {
			f.scan()
			if f.nlines > 0 && (full() || time.Since(f.batchStart) >= cfg.BatchWait) {
				if !f.flush(ctx) {
					return
				}
				continue
			}
			if len(f.buf)-f.cut > cfg.MaxLineBytes {
				// The line being read is over the limit: publish what
				// precedes it, then skip it without holding it.
				if f.nlines > 0 && !f.flush(ctx) {
					return
				}
				f.startSkip()
				continue
			}
		}
		if n > 0 {
			continue
		}
		// At EOF.
		if f.nlines > 0 {
			if !sleepCtx(ctx, min(cfg.PollInterval, cfg.BatchWait-time.Since(f.batchStart))) {
				return
			}
			continue
		}
		switched, ok := f.atEOF(ctx)
		if !ok {
			return
		}
		if !switched && !sleepCtx(ctx, cfg.PollInterval) {
			return
		}
	}
}

// start decides where to begin (see the package doc, "Restarts") and
// commits that position at once, so that a restart resumes there rather than
// applying start_at again.
func (f *follower) start(ctx context.Context) bool {
	saved, haveSaved := f.t.positions.get(f.path)
	fh, fi, err := openFile(f.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		f.readError("open", err)
	}
	if haveSaved {
		if fh != nil && inode(fi) == saved.Inode && fi.Size() >= saved.Offset && headMatches(fh, saved) {
			f.setFile(fh, saved.Inode, f.path, saved.Offset, saved.Line, saved.Line > 0 || saved.Offset == 0)
			f.headLen, f.headHash = saved.HeadLen, saved.HeadHash
			f.log.Info("resuming at the saved position", "inode", saved.Inode, "offset", saved.Offset)
			return f.sendPosition(ctx, nil)
		}
		var exclude uint64
		if fh != nil {
			exclude = inode(fi)
		}
		if old, oldFi := findSaved(f.path, saved, exclude); old != nil {
			kind := rotationRename
			if inode(oldFi) != saved.Inode {
				kind = rotationTruncate // found by its head: the copy of a copytruncate
			}
			f.t.m.rotations.WithLabelValues(f.path, kind).Inc()
			f.setFile(old, inode(oldFi), fmt.Sprintf("%s (rotated to %s)", f.path, old.Name()), saved.Offset, saved.Line, saved.Line > 0 || saved.Offset == 0)
			f.headLen, f.headHash = saved.HeadLen, saved.HeadHash
			f.draining = true
			if fh != nil {
				f.queue = append(f.queue, tracked{f: fh, ino: inode(fi), name: f.path})
			}
			f.log.Info("rotated while stopped: finishing the rotated file first", "rotated_file", old.Name(), "offset", saved.Offset)
			return f.sendPosition(ctx, nil)
		}
		if saved.Offset > 0 {
			f.t.m.gaps.WithLabelValues(f.path).Inc()
		}
		if fh != nil && inode(fi) == saved.Inode {
			f.t.m.rotations.WithLabelValues(f.path, rotationTruncate).Inc()
			f.log.Warn("file truncated or replaced while stopped and no copy found: lines after the saved position may be lost; reading it from the beginning",
				"offset", saved.Offset, "size", fi.Size())
		} else {
			f.log.Warn("the file of the saved position is gone (rotated and removed while stopped): its unread rest is lost; reading the current file from the beginning",
				"saved_inode", saved.Inode, "saved_offset", saved.Offset)
		}
		if fh != nil {
			f.setFile(fh, inode(fi), f.path, 0, 0, true)
			return f.sendPosition(ctx, nil)
		}
		return f.waitForPath(ctx)
	}
	if fh == nil {
		f.log.Info("file does not exist yet; it will be read from its beginning when it appears")
		return f.waitForPath(ctx)
	}
	startAt := f.t.cfg.StartAt
	if f.t.fromStart {
		startAt = "beginning"
	}
	if startAt == "beginning" {
		f.setFile(fh, inode(fi), f.path, 0, 0, true)
	} else {
		off, err := lastLineEnd(fh, fi.Size())
		if err != nil {
			f.readError("seek to end", err)
			off = fi.Size()
		}
		f.setFile(fh, inode(fi), f.path, off, 0, off == 0)
	}
	f.log.Info("first run: starting", "start_at", startAt, "offset", f.off)
	return f.sendPosition(ctx, nil)
}

// waitForPath waits for the path to exist and starts at its offset 0.
func (f *follower) waitForPath(ctx context.Context) bool {
	f.announce()
	for {
		fh, fi, err := openFile(f.path)
		if err == nil {
			f.setFile(fh, inode(fi), f.path, 0, 0, true)
			f.log.Info("file appeared; reading it from the beginning", "inode", f.ino)
			return f.sendPosition(ctx, nil)
		}
		if !errors.Is(err, os.ErrNotExist) {
			f.readError("open", err)
		}
		if !sleepCtx(ctx, f.t.cfg.PollInterval) {
			return false
		}
	}
}

func openFile(path string) (*os.File, os.FileInfo, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	fi, err := fh.Stat() // of the opened file, not the path: no race with a rename
	if err != nil {
		fh.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		fh.Close()
		return nil, nil, fmt.Errorf("%s is not a regular file", path)
	}
	return fh, fi, nil
}

// setFile makes fh the file being read, from offset off.
func (f *follower) setFile(fh *os.File, ino uint64, name string, off, line int64, lineKnown bool) {
	if f.f != nil && f.f != fh {
		f.f.Close()
	}
	f.f, f.ino, f.name = fh, ino, name
	f.draining, f.complete, f.quietSince = false, false, time.Time{}
	f.headLen, f.headHash = 0, 0
	f.off, f.line, f.lineKnown = off, line, lineKnown
	f.buf, f.cut, f.nlines, f.scanned = f.buf[:0], 0, 0, 0
	f.sig = f.sig[:0]
	f.skipping, f.skipHead = false, nil
	f.size.Store(off)
}

// lastLineEnd returns the offset after the last '\n' before size (start_at
// end: never start inside a line being written). A file without any newline
// in its last MiB is started at its end.
func lastLineEnd(fh *os.File, size int64) (int64, error) {
	if size == 0 {
		return 0, nil
	}
	n := min(size, 1<<20)
	buf := make([]byte, n)
	if _, err := fh.ReadAt(buf, size-n); err != nil && !errors.Is(err, io.EOF) {
		return size, err
	}
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		return size - n + int64(i) + 1, nil
	}
	if n == size {
		return 0, nil // one line being written: read it once complete
	}
	return size, nil
}

func (f *follower) readError(what string, err error) {
	f.t.m.readErrors.WithLabelValues(f.path).Inc()
	f.logLimit.Warn(f.log, what, "audit tail: "+what+" failed; retrying", "err", err)
}
