// Package audittail follows kube-apiserver audit log files
// (--audit-log-path, --audit-log-format=json: one JSON event per line) and
// publishes their records, surviving rotation and restarts without losing or
// inventing lines.
//
// # Pipeline per file
//
// A reader goroutine reads the file in chunks, cuts complete lines into
// batches (batch_lines lines or batch_bytes bytes, or whatever is there
// batch_wait after the batch's first line), decodes each batch with the
// record decoder, applies redaction and the size policy, and hands the batch
// to a committer goroutine through an unbuffered channel (with a
// collector.Pipeliner, such as the Kafka publisher, the records' typed views
// are dropped right after redaction: they are most of a decoded record's
// memory and nothing after redaction reads them). The committer publishes
// the batch's dead letters and records and only then advances the in-memory
// position, which a third goroutine writes to the positions file every
// positions_sync_interval and once more on shutdown. So the positions file
// never runs ahead of what is durable: a crash causes re-delivery (same
// record IDs), never loss. On collector.ErrBackpressure the committer
// retries the same batch with exponential backoff (100 ms to 5 s) for as
// long as it lasts; the bounded channel then stops the reader, which stops
// reading the file. Any other publisher error is retried 5 times, then the
// batch is published a record at a time and a record refused 5 times alone
// becomes a dead letter (reason publish_refused), so one line never holds
// back the lines after it (publish.go).
//
// # Lines
//
// A line is never decoded before its '\n' has been read: a partial last line
// stays in the buffer until it is completed. If the file is rotated away with
// a partial line at its end, that fragment becomes a dead letter
// (reason partial_line). A line longer than max_line_bytes is skipped without
// being held in memory and becomes a dead letter with its first
// dead_letter_max_bytes (reason too_large). Malformed lines become dead
// letters carrying the file, byte offset, 1-based line number and the
// decoder's error, and are counted (read.go).
//
// # Rotation
//
// The file is polled (every poll_interval while at EOF), not watched with
// fsnotify: polling needs no extra dependency or inotify watches (which are
// limited per user and do not work on every filesystem a control-plane node
// may mount), costs one fstat and one stat per interval, and has to exist
// anyway, because inotify events can be missed (queue overflow) and rotation
// must be detected by comparing inodes and sizes regardless. At EOF:
//
//   - rename rotation (what kube-apiserver's lumberjack does): the path now
//     names another inode. The new file is opened and queued; the old file
//     (still open) is read to EOF, and once it stayed at EOF for one more
//     poll interval (a writer may still be flushing to it) the tail switches
//     to the queued file at offset 0.
//   - copytruncate: the file is shorter than the position, or the bytes
//     just before the position changed (truncated and rewritten). The tail
//     looks in the directory for the copy (a file whose name starts like the
//     path's and whose bytes before the position match the last 4 KiB read),
//     reads the copy from the position to its end, then the truncated file
//     from 0. Without a copy it restarts at 0 and counts a rotation gap.
//     While a copy is read, the head (first KiB) of the truncated file is
//     fingerprinted every poll interval; if the file no longer starts with
//     it when its turn comes, it was truncated once more and the copy
//     starting with that head is read first. Limits: copytruncate is
//     inherently racy (lines written between the copy and the truncation
//     are in neither file); two truncations within the time one copy is
//     read can skip the middle copy; lines written and rotated away within
//     one poll interval while the tail was idle at offset 0 are missed.
//     Prefer rename rotation, which has none of these limits: every file
//     seen at the path (checked every poll interval, also while busy) is
//     opened at once and queued, so even files rotated away again before
//     the tail reached them are read (up to 16 held open).
//
// Detecting and following rotation is in rotate.go.
//
// # Restarts
//
// The positions file maps each path to {inode, offset, line}. On start:
//
//   - same inode at the path, file at least as long as the offset: resume
//     at the offset;
//   - same inode, file shorter: it was truncated while we were down: read it
//     from 0 (and count a truncate rotation);
//   - another inode at the path (or the same inode with another head:
//     inode numbers are reused as soon as a file is deleted, so the
//     positions file also keeps a fingerprint of each file's first KiB): the
//     file was rotated while we were down. The directory is searched for the
//     saved file, by inode and head (renamed) or by head among files named
//     like the path (the copy of a copytruncate); if it is found, its rest
//     is read from the saved offset first, then the current file from 0. If
//     it is gone, the current file is read from 0 — everything in it is
//     newer than our position — and a rotation gap is counted. Only one
//     rotation while stopped can be bridged this way.
//   - no saved position (first run): start_at decides for a file that
//     exists — "beginning", or "end" (after its last complete line). A file
//     that appears later is read from 0. If the positions file was corrupt it
//     is moved aside and every file is read from the beginning (duplicates
//     are harmless: record IDs are stable; skipping would lose data).
//
// Entries of paths that are no longer configured are kept in the positions
// file, so a path removed and re-added resumes where it stopped. The start
// is follower.start (follower.go); the search for a saved file, findSaved
// (rotate.go).
package audittail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/record"
)

// Options are what a Tailer needs.
type Options struct {
	Config    config.AuditTailConfig
	Publisher collector.Publisher
	// Sanitizer redacts and size-caps records and dead letters; required.
	Sanitizer *redact.Sanitizer
	// Cluster is stamped on every record and dead letter.
	Cluster record.Cluster
	// DeadLetterMaxBytes caps the original bytes of one dead letter
	// (collector.dead_letter_max_bytes).
	DeadLetterMaxBytes int
	// Registerer receives the metrics (nil: not exported).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now gives the observed time of records; time.Now when nil.
	Now func() time.Time
}

// Tailer follows the configured audit log files.
type Tailer struct {
	cfg       config.AuditTailConfig
	pub       collector.Publisher
	san       *redact.Sanitizer
	cluster   record.Cluster
	log       *slog.Logger
	m         *metrics
	now       func() time.Time
	deadMax   int
	positions *positionStore
	// fromStart: no usable positions file (corrupt): read every file from
	// its beginning instead of applying start_at.
	fromStart bool

	started     chan struct{}
	startedOnce sync.Once
	pending     sync.WaitGroup // followers that have not decided where to start
	followers   map[string]*follower
}

// New loads the positions file and checks that it can be written (so a
// wrong positions_file fails at start, not after the first batch).
func New(o Options) (*Tailer, error) {
	if o.Publisher == nil || o.Sanitizer == nil {
		return nil, errors.New("audit tail: Publisher and Sanitizer are required")
	}
	c := o.Config
	if len(c.Paths) == 0 {
		return nil, errors.New("collector.audit_tail.paths: at least one path is required")
	}
	if c.PositionsFile == "" {
		return nil, errors.New("collector.audit_tail.positions_file: required")
	}
	defaults := config.Default().Collector.AuditTail
	if c.PollInterval <= 0 {
		c.PollInterval = defaults.PollInterval
	}
	if c.BatchLines <= 0 {
		c.BatchLines = defaults.BatchLines
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = defaults.BatchBytes
	}
	if c.BatchWait <= 0 {
		c.BatchWait = defaults.BatchWait
	}
	if c.MaxLineBytes <= 0 {
		c.MaxLineBytes = defaults.MaxLineBytes
	}
	if c.PositionsSyncInterval <= 0 {
		c.PositionsSyncInterval = defaults.PositionsSyncInterval
	}
	t := &Tailer{
		cfg:     c,
		pub:     o.Publisher,
		san:     o.Sanitizer,
		cluster: o.Cluster,
		log:     o.Logger,
		now:     o.Now,
		deadMax: o.DeadLetterMaxBytes,
		started: make(chan struct{}),
	}
	if t.log == nil {
		t.log = slog.Default()
	}
	t.log = t.log.With("component", Source)
	if t.now == nil {
		t.now = time.Now
	}
	if t.deadMax <= 0 {
		t.deadMax = 64 << 10
	}
	var err error
	if t.m, err = newMetrics(o.Registerer); err != nil {
		return nil, err
	}
	store, found, corrupt, err := loadPositions(c.PositionsFile)
	if err != nil {
		return nil, fmt.Errorf("collector.audit_tail.positions_file: %w", err)
	}
	if corrupt != nil {
		t.log.Error("positions file unreadable; reading every file from the beginning (records may be re-delivered, none skipped)", "err", corrupt)
		t.fromStart = true
	} else if !found {
		t.log.Info("no positions file: first run", "positions_file", c.PositionsFile, "start_at", c.StartAt)
	}
	t.positions = store
	if _, err := store.flush(true); err != nil {
		return nil, fmt.Errorf("collector.audit_tail.positions_file: %w", err)
	}
	t.followers = make(map[string]*follower, len(c.Paths))
	for _, p := range c.Paths {
		t.followers[p] = newFollower(t, p)
		t.m.follow(p)
	}
	return t, nil
}

// Progress reports how far the tail of path got, for obs.StallWatch: the
// committed offset, and the bytes of the file seen but not yet durable (the
// lag). A tail stuck on a line keeps its offset while the lag stays above
// zero. An unknown path reports zeros (idle).
func (t *Tailer) Progress(path string) obs.Progress {
	f, ok := t.followers[path]
	if !ok {
		return obs.Progress{}
	}
	committed := f.committed.Load()
	return obs.Progress{Position: committed, Pending: max(f.size.Load()-committed, 0)}
}

// Started is closed once every path's starting position is decided (the
// file opened and, with start_at end, its end measured; or found missing).
// Lines written after that are published.
func (t *Tailer) Started() <-chan struct{} { return t.started }

// Positions returns a copy of the committed positions.
func (t *Tailer) Positions() map[string]Position { return t.positions.snapshot() }

// Run follows every path until ctx ends, then writes the positions file one
// last time. It returns the error of that last write, if any.
func (t *Tailer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	t.pending.Add(len(t.cfg.Paths))
	go func() {
		t.pending.Wait()
		t.startedOnce.Do(func() { close(t.started) })
	}()
	for _, p := range t.cfg.Paths {
		f := t.followers[p]
		wg.Add(2)
		go func() { defer wg.Done(); f.readLoop(ctx) }()
		go func() { defer wg.Done(); f.commitLoop(ctx) }()
	}
	syncDone := make(chan struct{})
	go func() {
		defer close(syncDone)
		tick := time.NewTicker(t.cfg.PositionsSyncInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				t.flushPositions(false)
			}
		}
	}()
	wg.Wait()
	<-syncDone
	if err := t.flushPositions(true); err != nil {
		return fmt.Errorf("audit tail: %w", err)
	}
	t.log.Info("audit tail stopped; positions written", "positions_file", t.cfg.PositionsFile)
	return nil
}

func (t *Tailer) flushPositions(force bool) error {
	wrote, err := t.positions.flush(force)
	switch {
	case err != nil:
		t.m.positionWrites.WithLabelValues(writeError).Inc()
		t.log.Error("positions file not written; will retry", "err", err)
	case wrote:
		t.m.positionWrites.WithLabelValues(writeOK).Inc()
	}
	return err
}
