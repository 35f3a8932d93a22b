// Package ndjson is the local document store of `kubesift run`: a
// sink.Writer that appends every document to <dir>/<index>.ndjson, one JSON
// document per line, instead of indexing it in Elasticsearch.
//
// The documents are the sink/ecs Builder's, byte for byte — the same Body the
// Elasticsearch writer sends as a bulk item's source — so what a user sees
// in the files is what Kibana would show once they point kubesift at a
// cluster. Nothing here builds or changes a document.
//
// # What done and retry mean here
//
// The Writer contract (package sink) holds with a file for a store:
//
//   - done(Indexed) is called once the document's line is written to the
//     file (handed to the operating system; survives a crash of kubesift,
//     not of the machine unless Options.Fsync is set). Only then does the
//     processor commit the Kafka offset.
//   - done(Duplicate) is called for a document whose ID the store already
//     has — written earlier in this run, or found in the file when the
//     Writer opened it — mirroring Elasticsearch's create-by-ID, so a
//     re-delivered record does not appear twice. Every kubesift document
//     carries its _id as event.id, which is how existing files are read back.
//   - A versioned document (sink.Doc.Version > 0: the current state of a
//     posture finding) follows Elasticsearch's external versioning instead:
//     a higher version than the stored one replaces it, an equal or lower
//     one is reported Duplicate and counted as a version conflict (the
//     newer or the same state is there). See "Versioned documents".
//   - Rejected is never reported: a file accepts any line. A document whose
//     Index is not a safe file name is an error of the caller's
//     configuration and is rejected with a reason naming the index.
//   - A failed write (disk full, I/O error) is retried with backoff for as
//     long as it takes (backoff.Policy), logged and counted; meanwhile the
//     bounded buffer fills and Add blocks — the same backpressure as an
//     Elasticsearch outage. A partial write keeps its unwritten tail, so a
//     line is never torn or written twice.
//   - Close writes what was accepted, fsyncs and closes the files, and calls
//     every outstanding done; it gives up when ctx ends (those documents are
//     then not committed and Kafka re-delivers them).
//
// # Versioned documents
//
// Files are only appended to: a versioned document that replaces an older
// one is appended as a new line, and the older line stays. A reader takes
// the last line of an event.id as its current document — within a file
// the lines of one ID are in increasing version, as the store accepted
// them — which is what Elasticsearch's index would hold. Rewriting the file
// at Close instead would need every current document in memory or a second
// pass over the file; appending keeps the file the log the rest of the
// store is and keeps memory at one version per versioned ID beside the ID
// digest: about 35 bytes more a versioned ID, where the digest costs 24
// (BenchmarkVersionSet, 200,000 finding IDs). A document stored without a
// version counts as version 0, so any versioned write replaces it.
//
// The store reads a versioned document's version back from an existing
// file in kubesift.finding.version, where sink/ecs puts it (as it reads
// IDs from event.id); Files counts each ID once.
//
// # Findings
//
// FindingsWriter (findings.go) is the posture consumer's findings sink and
// state reader on this store: the state, transition and score documents of
// sink/ecs, each in its index's file, with the findings ack contract of
// the Elasticsearch one; States reads the current states back.
package ndjson

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/sink"
)

// Options configure a Writer.
type Options struct {
	// Dir receives one <index>.ndjson file per index; it is created if
	// missing. Existing files are appended to (their IDs are loaded first).
	Dir string
	// MaxBufferedBytes bounds the bytes accepted and not yet written
	// (default 4 MiB); Add blocks beyond it.
	MaxBufferedBytes int
	// FlushInterval is how often buffered lines are written (default
	// 100ms); a full buffer is written at once.
	FlushInterval time.Duration
	// Fsync makes every write durable before its done is called (slower);
	// otherwise the files are fsynced on Close only.
	Fsync bool
	// Backoff spaces the retries of a failed write.
	Backoff    backoff.Policy
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Writer is the NDJSON sink.Writer; see the package doc.
type Writer struct {
	o   Options
	log *slog.Logger
	m   *metrics

	mu       sync.Mutex
	cond     *sync.Cond // signalled when buffered bytes shrink or on close
	files    map[string]*file
	seen     map[docKey]struct{} // of every stored document
	versions map[docKey]int64    // of stored versioned documents
	buffered int
	closed   bool
	wake     chan struct{}
	stopped  chan struct{}
	// rejects are the done callbacks of refused documents, run by the
	// flusher like every other callback (never on Add's stack).
	rejects []func()
	counts  map[string]int // documents written per index, for the summary
}

// handle is what the Writer needs of an open file (tests inject failures).
type handle interface {
	io.Writer
	Sync() error
	Close() error
}

// openFile opens an output file for append; tests replace it.
var openFile = func(path string) (handle, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
}

// file is one index's output file and the lines waiting for it.
type file struct {
	f       handle
	path    string
	pending []byte   // accepted lines not yet written
	dones   []func() // done callbacks of the lines in pending, in order
	cuts    []int    // end offset in pending of each line, parallel to dones
}

// safeIndex is what an index name may be to become a file name: the names
// Elasticsearch itself allows, minus path separators.
var safeIndex = regexp.MustCompile(`^[a-z0-9][a-z0-9._+-]{0,254}$`)

// New opens (creating) Dir and reads the IDs of the documents already in
// its files, so that a second run into the same directory stores each
// document once.
func New(o Options) (*Writer, error) {
	if o.Dir == "" {
		return nil, errors.New("ndjson: output directory: required")
	}
	if o.MaxBufferedBytes <= 0 {
		o.MaxBufferedBytes = 4 << 20
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 100 * time.Millisecond
	}
	if o.Backoff.Initial <= 0 {
		o.Backoff = backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("ndjson: output directory: %w", err)
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	w := &Writer{o: o, log: o.Logger, m: m, files: map[string]*file{}, seen: map[docKey]struct{}{}, versions: map[docKey]int64{},
		wake: make(chan struct{}, 1), stopped: make(chan struct{}), counts: map[string]int{}}
	w.cond = sync.NewCond(&w.mu)
	if err := w.loadExisting(); err != nil {
		return nil, err
	}
	go w.flusher()
	return w, nil
}

// loadExisting reads event.id of every line of every *.ndjson file in Dir,
// and the version of versioned documents. A line that is not a document
// with an event.id (a file someone edited) is reported and skipped: it
// cannot match a kubesift document anyway.
func (w *Writer) loadExisting() error {
	paths, err := filepath.Glob(filepath.Join(w.o.Dir, "*.ndjson"))
	if err != nil {
		return fmt.Errorf("ndjson: %w", err)
	}
	for _, p := range paths {
		index := filepath.Base(p)
		index = index[:len(index)-len(".ndjson")]
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("ndjson: reading existing %s: %w", p, err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		line, bad := 0, 0
		for sc.Scan() {
			line++
			id := jsoniter.Get(sc.Bytes(), "event", "id").ToString()
			if id == "" {
				bad++
				continue
			}
			key := keyOf(index, id)
			if v := jsoniter.Get(sc.Bytes(), versionField...).ToInt64(); v > 0 {
				w.versions[key] = max(w.versions[key], v)
			}
			if _, dup := w.seen[key]; !dup {
				w.seen[key] = struct{}{}
				w.counts[index]++
			}
		}
		err = sc.Err()
		_ = f.Close()
		if err != nil {
			return fmt.Errorf("ndjson: reading existing %s line %d: %w", p, line+1, err)
		}
		if bad > 0 {
			w.log.Warn("lines without event.id in an existing output file; they are kept but cannot deduplicate", "file", p, "lines", bad)
		}
	}
	return nil
}

// Add accepts one document; see the package doc. It blocks while the buffer
// is full.
func (w *Writer) Add(ctx context.Context, d sink.Doc, done func(sink.Result)) error {
	size := len(d.Body) + 1
	// The digest is computed before the lock, and only for documents with
	// an ID (those without cannot be deduplicated).
	var key docKey
	if d.ID != "" {
		key = keyOf(d.Index, d.ID)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !safeIndex.MatchString(d.Index) {
		if w.closed {
			return errors.New("ndjson: writer closed")
		}
		return w.rejectLocked(done, fmt.Errorf("ndjson: index %q is not a valid index name", d.Index))
	}
	// Wait for room; a document larger than the whole buffer is taken
	// once the buffer is empty, so it cannot wait forever.
	for !w.closed && w.buffered > 0 && w.buffered+size > w.o.MaxBufferedBytes {
		if err := ctx.Err(); err != nil {
			return err
		}
		w.m.blocked.Inc()
		w.signal()
		waitCond(ctx, w.cond)
	}
	if w.closed {
		return errors.New("ndjson: writer closed")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	_, stored := w.seen[key]
	stored = stored && d.ID != ""
	versioned := d.Version > 0 && d.ID != ""
	if stored && (!versioned || d.Version <= w.versions[key]) {
		if versioned {
			w.m.versionConflict.Inc()
		} else {
			w.m.duplicate.Inc()
		}
		// The fate of a duplicate is known now, but done must not run
		// under our lock or on the caller's stack: queue it behind the
		// lines already pending so callbacks keep their order.
		f, err := w.fileLocked(d.Index)
		if err != nil {
			return w.rejectLocked(done, err)
		}
		f.dones = append(f.dones, func() { done(sink.Result{Status: sink.Duplicate}) })
		f.cuts = append(f.cuts, len(f.pending))
		w.signal()
		return nil
	}
	f, err := w.fileLocked(d.Index)
	if err != nil {
		return w.rejectLocked(done, err)
	}
	if d.ID != "" {
		w.seen[key] = struct{}{}
	}
	if versioned {
		w.versions[key] = d.Version
	}
	f.pending = append(f.pending, d.Body...)
	f.pending = append(f.pending, '\n')
	f.cuts = append(f.cuts, len(f.pending))
	index := d.Index
	f.dones = append(f.dones, func() {
		w.m.indexed.Inc()
		done(sink.Result{Status: sink.Indexed})
	})
	if !stored {
		w.counts[index]++
	}
	w.buffered += size
	w.m.buffered.Set(float64(w.buffered))
	if w.buffered >= w.o.MaxBufferedBytes/2 {
		w.signal()
	}
	return nil
}

// rejectLocked refuses a document whose index is not a file name or whose
// file cannot be opened (opening is tried again for the next document). The
// reason names the index or path, never the contents, and the processor
// dead-letters the document instead of stalling the stream on it.
func (w *Writer) rejectLocked(done func(sink.Result), err error) error {
	w.m.rejected.Inc()
	reason := err.Error()
	w.rejects = append(w.rejects, func() { done(sink.Result{Status: sink.Rejected, Reason: reason}) })
	w.signal()
	return nil
}

// fileLocked returns the open file of index, opening it for append.
func (w *Writer) fileLocked(index string) (*file, error) {
	if f := w.files[index]; f != nil {
		return f, nil
	}
	p := filepath.Join(w.o.Dir, index+".ndjson")
	fh, err := openFile(p)
	if err != nil {
		return nil, fmt.Errorf("ndjson: open %s: %w", p, err)
	}
	f := &file{f: fh, path: p}
	w.files[index] = f
	return f, nil
}

func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// waitCond waits on c (whose lock the caller holds) until it is signalled
// or ctx ends; sync.Cond knows no contexts, so a watcher broadcasts.
func waitCond(ctx context.Context, c *sync.Cond) {
	stop := context.AfterFunc(ctx, func() {
		c.L.Lock()
		c.Broadcast()
		c.L.Unlock()
	})
	c.Wait()
	stop()
}

// flusher writes buffered lines every FlushInterval, or at once when Add
// asks, and calls the done callbacks of what it wrote — never under the
// lock, and always from this goroutine, in order per file.
func (w *Writer) flusher() {
	defer close(w.stopped)
	t := time.NewTicker(w.o.FlushInterval)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-t.C:
		case <-w.wake:
		}
		w.mu.Lock()
		closing := w.closed
		w.mu.Unlock()
		if err := w.flushOnce(); err != nil {
			failures++
			w.m.writeErrors.Inc()
			w.log.Error("writing the NDJSON output failed; retrying", "dir", w.o.Dir, "err", err, "attempt", failures)
			time.Sleep(w.o.Backoff.Wait(failures))
			continue
		}
		failures = 0
		if closing && w.empty() {
			return
		}
	}
}

// empty reports whether nothing is pending.
func (w *Writer) empty() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range w.files {
		if len(f.pending) > 0 || len(f.dones) > 0 {
			return false
		}
	}
	return len(w.rejects) == 0
}

// flushOnce writes every file's pending bytes, then runs the callbacks of
// the lines that are completely written. The write happens outside the
// lock: Add keeps appending to a fresh slice meanwhile.
func (w *Writer) flushOnce() error {
	w.mu.Lock()
	indexes := make([]string, 0, len(w.files))
	for k := range w.files {
		indexes = append(indexes, k)
	}
	rejects := w.rejects
	w.rejects = nil
	w.mu.Unlock()
	for _, r := range rejects {
		r()
	}
	sort.Strings(indexes)
	var errs []error
	for _, idx := range indexes {
		if err := w.flushFile(idx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (w *Writer) flushFile(index string) error {
	w.mu.Lock()
	f := w.files[index]
	buf, cuts, dones := f.pending, f.cuts, f.dones
	f.pending, f.cuts, f.dones = nil, nil, nil
	w.mu.Unlock()
	if len(dones) == 0 {
		return nil
	}
	n, err := writeFull(f.f, buf)
	if err == nil && w.o.Fsync {
		err = f.f.Sync()
		if err != nil {
			n = 0 // nothing is known durable: keep every callback waiting
		}
	}
	// The lines wholly written are done; the rest (a partial line's tail
	// included) go back to the front of pending, to be written first.
	k := sort.Search(len(cuts), func(i int) bool { return cuts[i] > n })
	if err != nil || k < len(cuts) {
		w.mu.Lock()
		rest := append([]byte(nil), buf[n:]...)
		restCuts := make([]int, 0, len(cuts)-k+len(f.cuts))
		for _, c := range cuts[k:] {
			restCuts = append(restCuts, c-n)
		}
		for _, c := range f.cuts {
			restCuts = append(restCuts, c+len(rest))
		}
		f.pending = append(rest, f.pending...)
		f.cuts = restCuts
		f.dones = append(append([]func(){}, dones[k:]...), f.dones...)
		w.mu.Unlock()
	}
	if n > 0 || k > 0 {
		w.mu.Lock()
		w.buffered -= n
		if w.buffered < 0 {
			w.buffered = 0
		}
		w.m.buffered.Set(float64(w.buffered))
		w.cond.Broadcast()
		w.mu.Unlock()
	}
	for _, d := range dones[:k] {
		d()
	}
	if err != nil {
		return fmt.Errorf("%s: %w", f.path, err)
	}
	return nil
}

// writeFull writes b, reporting how much of it reached the file.
func writeFull(wr io.Writer, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := wr.Write(b[n:])
		n += m
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, io.ErrShortWrite
		}
	}
	return n, nil
}

// Close writes what was accepted, fsyncs and closes the files; see the
// package doc.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
	w.signal()
	select {
	case <-w.stopped:
	case <-ctx.Done():
		return fmt.Errorf("ndjson: close: %w (documents not written stay uncommitted)", ctx.Err())
	}
	var errs []error
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range w.files {
		if err := f.f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("ndjson: fsync %s: %w", f.path, err))
		}
		if err := f.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("ndjson: close %s: %w", f.path, err))
		}
	}
	return errors.Join(errs...)
}

// File is one output file, for the summary of `kubesift run`.
type File struct {
	Index string
	Path  string
	// Docs counts documents by ID: a versioned document replaced by a
	// later line counts once.
	Docs int
}

// Files lists the output files and how many documents each holds, by index.
func (w *Writer) Files() []File {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]File, 0, len(w.counts))
	for idx, n := range w.counts {
		out = append(out, File{Index: idx, Path: filepath.Join(w.o.Dir, idx+".ndjson"), Docs: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// metrics are the Writer's kubesift_sink_ndjson_* series.
type metrics struct {
	indexed, duplicate, rejected, blocked, writeErrors prometheus.Counter
	buffered                                           prometheus.Gauge
	versionConflict                                    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "kubesift_sink_ndjson_" + name, Help: help})
	}
	m := &metrics{
		indexed:     c("docs_written_total", "Documents written to the NDJSON files."),
		duplicate:   c("docs_duplicate_total", "Documents whose ID the files already held (re-deliveries), counted as success."),
		rejected:    c("docs_rejected_total", "Documents refused (an index name that is not a safe file name, a file that cannot be opened)."),
		blocked:     c("add_blocked_total", "Times Add waited for buffer space (backpressure)."),
		writeErrors: c("write_errors_total", "Failed writes of the output files; each is retried with backoff."),
		versionConflict: c("docs_version_conflict_total",
			"Versioned documents not written because the files held the same or a newer version (reported Duplicate)."),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubesift_sink_ndjson_buffered_bytes", Help: "Bytes accepted and not yet written (bounded by the buffer size).",
		}),
	}
	if err := obs.Register(reg, m.indexed, m.duplicate, m.rejected, m.blocked, m.writeErrors, m.buffered, m.versionConflict); err != nil {
		return nil, fmt.Errorf("ndjson: metrics: %w", err)
	}
	return m, nil
}

var _ sink.Writer = (*Writer)(nil)

// versionField is where a versioned document carries its version: the
// external version sink/ecs writes into the findings state document.
var versionField = []any{"kubesift", "finding", "version"}

// docKey identifies a stored document by a 128-bit digest of its index and
// ID: 16 bytes an entry instead of the ~60-byte key, so a --follow run that
// stores millions of documents keeps its deduplication set small. Two
// documents would have to collide in SHA-256's first 128 bits to be taken
// for one another (odds of about n²/2¹²⁹: nil for any store this writes).
type docKey [16]byte

func keyOf(index, id string) docKey {
	var buf [128]byte // on the stack for the usual index and ID lengths
	sum := sha256.Sum256(append(append(append(buf[:0], index...), 0), id...))
	return docKey(sum[:16])
}
