package audittail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/record"
)

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

// tracked is an open file the follower will read.
type tracked struct {
	f    *os.File
	ino  uint64
	name string
	// verify: the file was truncated (copytruncate) and is queued behind its
	// copy. headLen/headHash fingerprint what it holds since, refreshed
	// every poll interval; if it no longer starts with that when its turn
	// comes, it was truncated again and the newer copy is read first.
	verify   bool
	headLen  int
	headHash uint64
}

// refreshHead extends the fingerprint of a queued truncated file while its
// head is still the one seen before.
func (q *tracked) refreshHead() {
	if !q.verify || q.headLen >= headMax {
		return
	}
	buf := make([]byte, headMax)
	n, _ := q.f.ReadAt(buf, 0)
	if n < q.headLen || (q.headLen > 0 && fnv64(buf[:q.headLen]) != q.headHash) {
		return // truncated again: next() deals with it
	}
	q.headLen, q.headHash = n, fnv64(buf[:n])
}

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
			kind := "rename"
			if inode(oldFi) != saved.Inode {
				kind = "truncate" // found by its head: the copy of a copytruncate
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
			f.t.m.rotations.WithLabelValues(f.path, "truncate").Inc()
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

// sendPosition hands a batch of dead letters (possibly none) that commits the
// current offset.
func (f *follower) sendPosition(ctx context.Context, dls []collector.DeadLetter) bool {
	return f.send(ctx, &batch{dls: dls, pos: f.position(f.off)})
}

func (f *follower) position(off int64) Position {
	if want := int(min(off, headMax)); f.headLen < want {
		// The bytes before the position never change in an append-only
		// file: fingerprint them once (up to 1 KiB, in the first batches).
		buf := make([]byte, want)
		if n, _ := f.f.ReadAt(buf, 0); n == want {
			f.headLen, f.headHash = want, fnv64(buf)
		}
	}
	p := Position{Inode: f.ino, Offset: off, HeadLen: f.headLen, HeadHash: f.headHash}
	if f.lineKnown {
		p.Line = f.line
	}
	return p
}

func fnv64(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// headMatches reports whether fh starts with the bytes fingerprinted in p.
func headMatches(fh *os.File, p Position) bool {
	if p.HeadLen <= 0 {
		return true // nothing fingerprinted (offset 0, or an older positions file)
	}
	buf := make([]byte, p.HeadLen)
	n, _ := fh.ReadAt(buf, 0)
	return n == p.HeadLen && fnv64(buf) == p.HeadHash
}

func (f *follower) send(ctx context.Context, b *batch) bool {
	select {
	case f.out <- b:
		return true
	case <-ctx.Done():
		return false
	}
}

// fill reads the next chunk after what is buffered. truncated reports that
// the file was truncated (copytruncate) before or during the read: then
// nothing was added to the buffer.
//
// The check is done after the read, which makes it race-free: if the bytes
// before the read position are still those we read earlier, the file was not
// truncated before the read, so the chunk is good; if they changed, the chunk
// is dropped and read again from the copy. It costs one 4 KiB pread per
// 256 KiB chunk, from the page cache.
func (f *follower) fill() (n int, truncated bool, err error) {
	if cap(f.buf)-len(f.buf) < readChunk/4 {
		nb := make([]byte, len(f.buf), max(2*cap(f.buf), len(f.buf)+readChunk))
		copy(nb, f.buf)
		f.buf = nb
	}
	readOff := f.off + int64(len(f.buf))
	p := f.buf[len(f.buf):min(cap(f.buf), len(f.buf)+readChunk)]
	n, err = f.f.ReadAt(p, readOff)
	if n > 0 && !f.draining && !f.sigMatches(readOff) {
		return 0, true, nil
	}
	if n > 0 {
		f.buf = f.buf[:len(f.buf)+n]
		f.remember(p[:n])
		if end := f.off + int64(len(f.buf)); end > f.size.Load() {
			f.size.Store(end)
		}
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, false, err
}

// remember keeps the last sigLen bytes read.
func (f *follower) remember(p []byte) {
	if len(p) >= sigLen {
		f.sig = append(f.sig[:0], p[len(p)-sigLen:]...)
		return
	}
	f.sig = append(f.sig, p...)
	if len(f.sig) > sigLen {
		f.sig = append(f.sig[:0], f.sig[len(f.sig)-sigLen:]...)
	}
}

// scan extends the pending batch by the complete lines in the buffer, up to
// the batch limits.
func (f *follower) scan() {
	cfg := &f.t.cfg
	for f.nlines < cfg.BatchLines && f.cut < cfg.BatchBytes {
		i := bytes.IndexByte(f.buf[f.scanned:], '\n')
		if i < 0 {
			f.scanned = len(f.buf)
			return
		}
		f.scanned += i + 1
		f.cut = f.scanned
		if f.nlines == 0 {
			f.batchStart = time.Now()
		}
		f.nlines++
	}
}

// consume drops buf[:n] (bytes that now belong to a batch or were skipped).
func (f *follower) consume(n int) {
	m := copy(f.buf, f.buf[n:])
	f.buf = f.buf[:m]
	f.off += int64(n)
	f.scanned = max(f.scanned-n, 0)
	f.cut, f.nlines = 0, 0
	// Give back a buffer that grew for a giant line.
	if cap(f.buf) > 4*(f.t.cfg.BatchBytes+readChunk) && len(f.buf) < f.t.cfg.BatchBytes {
		f.buf = append(make([]byte, 0, f.t.cfg.BatchBytes+readChunk), f.buf...)
	}
}

// flush decodes the pending batch and hands it to the committer.
func (f *follower) flush(ctx context.Context) bool {
	data := f.buf[:f.cut]
	opts := record.DecodeOptions{Cluster: f.t.cluster, Now: f.t.now, MaxDocBytes: f.t.cfg.MaxLineBytes + 1}
	recs, errs := record.DecodeAll(data, f.name, opts)
	var dls []collector.DeadLetter
	if len(errs) > 0 {
		// The decoder reads a JSON stream: a line cut short runs on into
		// the next one until a document starts, so one error can cover
		// several lines (a truncated line followed by a garbage one would
		// leave the second in no dead letter). The audit log has one event
		// per line: decode this batch again line by line, so that each bad
		// line is its own dead letter with its own offset and number.
		recs, dls = f.decodeLines(data, opts)
	}
	good := recs[:0]
	for _, r := range recs {
		if err := f.t.san.Apply(r); err != nil {
			f.logLimit.Warn(f.log, "redaction", "record could not be redacted; sent to the dead-letter topic instead", "id", r.ID, "err", err)
			dls = append(dls, f.deadLetter(r.Object, "redaction", err.Error(), f.off, 0))
			continue
		}
		if f.lean && r.Object != nil {
			// Redaction and the size policy were the last readers of
			// the typed view: a Pipeliner publishes from the envelope and
			// Object alone (collector.Pipeliner). Dropping the view here
			// frees most of a decoded record (its strings and maps, ~3 KB
			// for a 1.5 KB event) while it waits and is in flight.
			r.Audit, r.CoreEvent, r.Event = nil, nil, nil
		}
		good = append(good, r)
	}
	f.t.m.received.Add(float64(len(good)))
	f.line += int64(f.nlines)
	b := &batch{recs: good, dls: dls}
	f.consume(f.cut)
	b.pos = f.position(f.off)
	return f.send(ctx, b)
}

// decodeLines decodes data (whole lines) one line at a time: the records of
// the good lines, in order, and a dead letter per bad line.
func (f *follower) decodeLines(data []byte, opts record.DecodeOptions) ([]*record.Record, []collector.DeadLetter) {
	var recs []*record.Record
	var dls []collector.DeadLetter
	lineKnown := f.ensureLine()
	for start, i := 0, 0; start < len(data); i++ {
		end := bytes.IndexByte(data[start:], '\n')
		if end < 0 {
			end = len(data)
		} else {
			end += start
		}
		text := data[start:end]
		lineStart := start
		start = end + 1
		if len(bytes.TrimSpace(text)) == 0 {
			continue
		}
		lr, errs := record.DecodeAll(text, f.name, opts)
		recs = append(recs, lr...)
		for _, err := range errs {
			reason, msg := "other", err.Error()
			var de *record.DecodeError
			if errors.As(err, &de) {
				reason, msg = de.Reason(), de.Err.Error()
			}
			off := f.off + int64(lineStart)
			line := 0
			if lineKnown {
				line = int(f.line) + i + 1
			}
			f.t.m.rejected.WithLabelValues("malformed").Inc()
			full := f.location(off, line) + ": " + msg
			f.logLimit.Warn(f.log, "malformed", "malformed line sent to the dead-letter topic", "line", line, "offset", off, "reason", reason, "err", msg)
			dls = append(dls, f.deadLetter(bytes.TrimRight(text, "\r"), reason, full, off, line))
			break // one dead letter per line, holding the whole line
		}
	}
	return recs, dls
}

func (f *follower) location(off int64, line int) string {
	if line > 0 {
		return fmt.Sprintf("%s:%d (byte %d)", f.name, line, off)
	}
	return fmt.Sprintf("%s (byte %d)", f.name, off)
}

func (f *follower) deadLetter(data []byte, reason, msg string, off int64, line int) collector.DeadLetter {
	return f.t.san.DeadLetter(collector.DeadLetter{
		Data:    data,
		Source:  Source,
		Origin:  f.path,
		Offset:  off,
		Line:    line,
		Reason:  reason,
		Error:   msg,
		Cluster: f.t.cluster,
	})
}

// ensureLine makes f.line known, counting the lines before f.off once (only
// needed for dead letters after starting at the end or at a saved position
// without a line number).
func (f *follower) ensureLine() bool {
	if f.lineKnown {
		return true
	}
	n, err := countLines(f.f, f.off)
	if err != nil {
		f.readError("count lines", err)
		return false
	}
	f.line, f.lineKnown = n, true
	return true
}

func countLines(fh *os.File, upTo int64) (int64, error) {
	buf := make([]byte, 1<<20)
	var n, off int64
	for off < upTo {
		k, err := fh.ReadAt(buf[:min(int64(len(buf)), upTo-off)], off)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		off += int64(k)
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return 0, err
		}
		if k == 0 {
			break
		}
	}
	return n, nil
}

// startSkip enters the skipping of an over-long line that starts at buf[0]
// (the pending batch was flushed).
func (f *follower) startSkip() {
	f.skipping = true
	f.skipOff = f.off
	f.skipHead = bytes.Clone(f.buf[:min(len(f.buf), f.t.deadMax)])
	f.consume(len(f.buf))
}

// skip discards the over-long line up to its '\n' and then dead-letters its
// head.
func (f *follower) skip(ctx context.Context) bool {
	i := bytes.IndexByte(f.buf, '\n')
	if i < 0 {
		f.consume(len(f.buf))
		return true
	}
	line := 0
	if f.ensureLine() {
		line = int(f.line) + 1
	}
	msg := fmt.Sprintf("%s: line longer than max_line_bytes (%d); dead letter of its first %d bytes, redacted", f.location(f.skipOff, line), f.t.cfg.MaxLineBytes, len(f.skipHead))
	f.t.m.rejected.WithLabelValues("malformed").Inc()
	f.logLimit.Warn(f.log, "too_large", "over-long line sent to the dead-letter topic", "line", line, "offset", f.skipOff)
	dl := f.deadLetter(f.skipHead, "too_large", msg, f.skipOff, line)
	f.skipping, f.skipHead = false, nil
	f.line++
	f.consume(i + 1)
	return f.sendPosition(ctx, []collector.DeadLetter{dl})
}

// leftover turns an unfinished line at the end of a file being left (rotated
// away, or truncated) into a dead letter.
func (f *follower) leftover(why string) []collector.DeadLetter {
	var data []byte
	var off int64
	reason := "partial_line"
	switch {
	case f.skipping:
		data, off, reason = f.skipHead, f.skipOff, "too_large"
	case len(f.buf) > 0:
		data, off = f.buf, f.off
	default:
		return nil
	}
	line := 0
	if f.ensureLine() {
		line = int(f.line) + 1
	}
	msg := fmt.Sprintf("%s: unfinished last line (%d bytes without a newline) when the file was %s", f.location(off, line), len(data), why)
	f.t.m.rejected.WithLabelValues("malformed").Inc()
	f.log.Warn("unfinished last line sent to the dead-letter topic", "why", why, "offset", off, "bytes", len(data))
	return []collector.DeadLetter{f.deadLetter(data, reason, msg, off, line)}
}

// atEOF checks, with nothing left to publish, whether the file was rotated
// or truncated, and switches files when it was. switched reports that
// reading should resume at once; ok is false when ctx ended.
func (f *follower) atEOF(ctx context.Context) (switched, ok bool) {
	st, err := f.f.Stat()
	if err != nil {
		f.readError("stat", err)
		return false, true
	}
	f.size.Store(st.Size())
	f.updateLag()
	readOff := f.off + int64(len(f.buf))
	if !f.draining && (st.Size() < readOff || !f.sigMatches(readOff)) {
		return true, f.truncated(ctx, st.Size())
	}
	f.checkPath()
	if !f.draining {
		return false, true
	}
	if f.complete {
		return true, f.next(ctx)
	}
	// A rotated file is finished once it stayed at EOF for a whole poll
	// interval: a writer may still have been flushing to it.
	if f.quietSince.IsZero() {
		f.quietSince = time.Now()
		return false, true
	}
	if time.Since(f.quietSince) < f.t.cfg.PollInterval {
		return false, true
	}
	return true, f.next(ctx)
}

// checkPath looks at what the path names now; a new file there is opened at
// once and queued behind the file being read, which is then finished first.
func (f *follower) checkPath() {
	f.lastCheck = time.Now()
	for i := range f.queue {
		f.queue[i].refreshHead()
	}
	pst, err := os.Stat(f.path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			f.readError("stat path", err)
		}
		return // removed: keep what is open until a new file appears
	}
	ino := inode(pst)
	if ino == f.ino || (len(f.queue) > 0 && f.queue[len(f.queue)-1].ino == ino) {
		return
	}
	if len(f.queue) >= maxQueued {
		f.logLimit.Warn(f.log, "queue", "files rotate faster than the tail reads them; not opening more until it catches up", "queued", len(f.queue))
		return
	}
	fh, fi, err := openFile(f.path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			f.readError("open", err)
		}
		return
	}
	if inode(fi) != ino {
		fh.Close() // rotated again in between; the next check sees the newest
		return
	}
	f.queue = append(f.queue, tracked{f: fh, ino: ino, name: f.path})
	f.t.m.rotations.WithLabelValues(f.path, "rename").Inc()
	f.log.Info("file rotated (new inode at the path): finishing the old file first", "old_inode", f.ino, "new_inode", ino)
	if !f.draining {
		f.draining, f.quietSince = true, time.Time{}
		f.name = fmt.Sprintf("%s (rotated, inode %d)", f.path, f.ino)
	}
}

// next leaves the finished file for the next queued one (or, with none
// queued, the file now at the path), read from its beginning; the finished
// file's unfinished last line goes with the commit of the new position.
func (f *follower) next(ctx context.Context) bool {
	dls := f.leftover("rotated")
	f.log.Info("finished the rotated file; continuing with the next one from its beginning", "file", f.name)
	if len(f.queue) > 0 {
		n := f.queue[0]
		f.queue = f.queue[1:]
		if n.verify && !headMatches(n.f, Position{HeadLen: n.headLen, HeadHash: n.headHash}) {
			// Truncated again while we read its previous copy: what it held
			// is in a newer copy, which starts with the head we saw.
			f.t.m.rotations.WithLabelValues(f.path, "truncate").Inc()
			if cp, cpFi := findByHead(f.path, n.headLen, n.headHash, n.ino, f.ino); cp != nil {
				f.log.Info("truncated again (copytruncate): reading the next copy first", "copy", cp.Name())
				f.setFile(cp, inode(cpFi), fmt.Sprintf("%s (copy %s)", f.path, cp.Name()), 0, 0, true)
				f.draining, f.complete = true, true
				n.headLen, n.headHash = 0, 0
				n.refreshHead()
				f.queue = append([]tracked{n}, f.queue...)
				return f.sendPosition(ctx, dls)
			}
			f.t.m.gaps.WithLabelValues(f.path).Inc()
			f.log.Warn("truncated again and no copy found: lines written to it in between are lost", "file", n.name)
		}
		f.setFile(n.f, n.ino, n.name, 0, 0, true)
		if len(f.queue) > 0 {
			f.draining = true
			f.name = fmt.Sprintf("%s (rotated, inode %d)", f.path, f.ino)
		}
		return f.sendPosition(ctx, dls)
	}
	for {
		fh, fi, err := openFile(f.path)
		if err == nil {
			f.setFile(fh, inode(fi), f.path, 0, 0, true)
			return f.sendPosition(ctx, dls)
		}
		if !errors.Is(err, os.ErrNotExist) {
			f.readError("open", err)
		}
		if !sleepCtx(ctx, f.t.cfg.PollInterval) {
			return false
		}
	}
}

// truncated handles a truncation of the file at the path (copytruncate, or
// a plain truncate) found with no complete line pending: continue in the
// copy at the same offset and then the truncated file from 0, or, without a
// copy, restart at 0 and count a gap. size is the file's size when known
// (-1 otherwise), for the log.
func (f *follower) truncated(ctx context.Context, size int64) bool {
	readOff := f.off + int64(len(f.buf))
	f.t.m.rotations.WithLabelValues(f.path, "truncate").Inc()
	if cp, cpFi := findCopy(f.path, f.ino, readOff, f.sig); cp != nil {
		f.log.Info("file truncated (copytruncate): reading the rest from its copy first", "copy", cp.Name(), "offset", readOff)
		orig := tracked{f: f.f, ino: f.ino, name: f.path, verify: true}
		orig.refreshHead()
		f.queue = append([]tracked{orig}, f.queue...)
		// Keep buf/off/line/head: the copy continues exactly where we were.
		f.f, f.ino, f.name = cp, inode(cpFi), fmt.Sprintf("%s (copy %s)", f.path, cp.Name())
		f.draining, f.complete, f.quietSince = true, true, time.Time{}
		return true
	}
	f.t.m.gaps.WithLabelValues(f.path).Inc()
	f.log.Warn("file truncated and no copy of it found: lines written after our position and before the truncation are lost; restarting at its beginning",
		"offset", readOff, "size", size)
	dls := f.leftover("truncated")
	f.setFile(f.f, f.ino, f.path, 0, 0, true)
	return f.sendPosition(ctx, dls)
}

// sigMatches reports whether the bytes before readOff are still the ones we
// read there (false: the file was truncated and written again past our
// position before we noticed it shrink).
func (f *follower) sigMatches(readOff int64) bool {
	if len(f.sig) == 0 {
		return true
	}
	if cap(f.scratch) < len(f.sig) {
		f.scratch = make([]byte, sigLen)
	}
	s := f.scratch[:len(f.sig)]
	n, err := f.f.ReadAt(s, readOff-int64(len(s)))
	if n < len(s) {
		return err == nil // a short read without error cannot happen; with one, the file shrank
	}
	return bytes.Equal(s, f.sig)
}

// findCopy looks for the copy made by copytruncate: a file in the path's
// directory named like it (same stem), other than it, at least readOff long,
// whose bytes before readOff are the last ones we read. Newest first.
func findCopy(path string, ino uint64, readOff int64, sig []byte) (*os.File, os.FileInfo) {
	if len(sig) == 0 || readOff < int64(len(sig)) {
		return nil, nil
	}
	dir, base := filepath.Dir(path), filepath.Base(path)
	stem := strings.TrimSuffix(base, filepath.Ext(base))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil
	}
	type cand struct {
		name string
		mod  time.Time
	}
	var cands []cand
	for _, e := range entries {
		if e.Name() == base || !strings.HasPrefix(e.Name(), stem) || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Size() < readOff || inode(fi) == ino {
			continue
		}
		cands = append(cands, cand{e.Name(), fi.ModTime()})
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].mod.After(cands[j].mod) })
	buf := make([]byte, len(sig))
	for i, c := range cands {
		if i == 8 {
			break
		}
		fh, fi, err := openFile(filepath.Join(dir, c.name))
		if err != nil {
			continue
		}
		if n, _ := fh.ReadAt(buf, readOff-int64(len(sig))); n == len(sig) && bytes.Equal(buf, sig) {
			return fh, fi
		}
		fh.Close()
	}
	return nil, nil
}

// findByHead finds, among the files named like path (other than the
// excluded inodes), the one starting with the fingerprinted head.
func findByHead(path string, headLen int, headHash uint64, exclude ...uint64) (*os.File, os.FileInfo) {
	if headLen <= 0 {
		return nil, nil
	}
	dir, base := filepath.Dir(path), filepath.Base(path)
	stem := strings.TrimSuffix(base, filepath.Ext(base))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == base || !strings.HasPrefix(e.Name(), stem) {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Size() < int64(headLen) || slices.Contains(exclude, inode(fi)) {
			continue
		}
		if fh, fi, err := openFile(filepath.Join(dir, e.Name())); err == nil {
			if headMatches(fh, Position{HeadLen: headLen, HeadHash: headHash}) {
				return fh, fi
			}
			fh.Close()
		}
	}
	return nil, nil
}

// findSaved finds the file a saved position refers to, now that it is no
// longer at the path: by its inode (rename rotation) or, among the files
// named like the path, by its head (the copy of a copytruncate). It must be
// at least Offset long and match the fingerprint; exclude is the inode now at
// the path.
func findSaved(path string, p Position, exclude uint64) (*os.File, os.FileInfo) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	stem := strings.TrimSuffix(base, filepath.Ext(base))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil
	}
	var byHead []string
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == base {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Size() < p.Offset || inode(fi) == exclude {
			continue
		}
		if inode(fi) != p.Inode {
			if p.HeadLen > 0 && strings.HasPrefix(e.Name(), stem) {
				byHead = append(byHead, e.Name())
			}
			continue
		}
		if fh, fi, err := openFile(filepath.Join(dir, e.Name())); err == nil {
			if inode(fi) == p.Inode && headMatches(fh, p) {
				return fh, fi
			}
			fh.Close()
		}
	}
	for _, name := range byHead {
		if fh, fi, err := openFile(filepath.Join(dir, name)); err == nil {
			if fi.Size() >= p.Offset && headMatches(fh, p) {
				return fh, fi
			}
			fh.Close()
		}
	}
	return nil, nil
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

func (f *follower) updateLag() {
	f.t.m.lag.WithLabelValues(f.path).Set(float64(max(f.size.Load()-f.committed.Load(), 0)))
}

// publishDepth is how many batches of one file the committer keeps in
// flight when the publisher can pipeline (collector.Pipeliner): each Publish
// waits for Kafka's acknowledgement (a batch timeout plus a produce round
// trip), so one batch at a time leaves the tail idle most of the time.
const publishDepth = 3

// commitLoop is the committer goroutine: publish each batch, then commit its
// position, strictly in file order. When ctx ends it stops without
// committing what is not durable.
func (f *follower) commitLoop(ctx context.Context) {
	pl, ok := f.t.pub.(collector.Pipeliner)
	if !ok {
		for b := range f.out {
			if !f.publish(ctx, b) {
				for range f.out { // the reader is stopping; drop, do not commit
				}
				return
			}
			f.commit(b)
		}
		return
	}
	// Pipelined: up to publishDepth batches begun, committed oldest first.
	// Each begun batch has one goroutine waiting for its outcome (so the
	// loop can wait for the oldest and for new batches at once): at most
	// publishDepth per file, never one per record.
	type inflight struct {
		b    *batch
		done chan struct{}
		err  error
	}
	var fifo []*inflight
	// finish commits the oldest batch, which is done; false when ctx
	// ended before it was durable.
	finish := func() bool {
		j := fifo[0]
		fifo = fifo[1:]
		if j.err != nil {
			// Not durable (the spool full, …): publish it again the
			// ordinary way, retrying until it is or ctx ends.
			if !f.publishRecords(ctx, j.b) {
				return false
			}
		}
		f.commit(j.b)
		return true
	}
	stop := func() {
		for _, j := range fifo {
			<-j.done // ends: acknowledged, spooled, or ctx's end
		}
		for range f.out { // the reader is stopping; drop, do not commit
		}
	}
	for {
		var b *batch
		more := true
		switch {
		case len(fifo) == 0:
			b, more = <-f.out
		case len(fifo) >= publishDepth:
			<-fifo[0].done
		default:
			select {
			case b, more = <-f.out:
			case <-fifo[0].done:
			}
		}
		if b == nil && more { // the oldest is done
			if !finish() {
				stop()
				return
			}
			continue
		}
		if !more {
			for len(fifo) > 0 {
				<-fifo[0].done
				if !finish() {
					stop()
					return
				}
			}
			return
		}
		if !f.publishDeadLetters(ctx, b) {
			stop()
			return
		}
		j := &inflight{b: b, done: make(chan struct{})}
		if len(b.recs) == 0 {
			close(j.done)
		} else {
			wait := pl.Begin(ctx, b.recs)
			go func() {
				j.err = wait(ctx)
				close(j.done)
			}()
		}
		fifo = append(fifo, j)
	}
}

// commit records b's position as durable.
func (f *follower) commit(b *batch) {
	f.t.positions.set(f.path, b.pos)
	f.committed.Store(b.pos.Offset)
	f.updateLag()
}
