package audittail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/record"
)

// Reading: the file is read in chunks into one buffer, cut into batches of
// complete lines, and decoded; a bad line, a line over max_line_bytes and an
// unfinished last line each become a dead letter of their own.

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
			dls = append(dls, f.deadLetter(r.Object, collector.ReasonRedaction, err.Error(), f.off, 0))
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
			f.t.m.rejected.WithLabelValues(collector.ReasonMalformed).Inc()
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
	f.t.m.rejected.WithLabelValues(collector.ReasonMalformed).Inc()
	f.logLimit.Warn(f.log, "too_large", "over-long line sent to the dead-letter topic", "line", line, "offset", f.skipOff)
	dl := f.deadLetter(f.skipHead, record.ReasonTooLarge, msg, f.skipOff, line)
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
	reason := collector.ReasonPartialLine
	switch {
	case f.skipping:
		data, off, reason = f.skipHead, f.skipOff, record.ReasonTooLarge
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
	f.t.m.rejected.WithLabelValues(collector.ReasonMalformed).Inc()
	f.log.Warn("unfinished last line sent to the dead-letter topic", "why", why, "offset", off, "bytes", len(data))
	return []collector.DeadLetter{f.deadLetter(data, reason, msg, off, line)}
}
