// Package replay is the file source of `kubesift run`: it reads recorded
// audit logs and Kubernetes Events files once, from start to end, and
// publishes their records exactly as the live sources do — decoded by the
// record decoders, redacted and size-capped by the same Sanitizer, stamped
// with the cluster, handed to a collector.Publisher in batches.
//
// # Done and retry
//
// A file is done when every record read from it was published (Publish
// returned nil: the records are on Kafka or in the spool) and every line
// that could not be decoded is a durable dead letter naming the file, line
// and byte offset. ErrBackpressure is retried with backoff for the same
// batch; any other Publish error ends Run (the publisher is closed or
// broken). A replay keeps no position: replaying a file again publishes its
// records again with the same IDs, which the stores deduplicate.
package replay

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/record"
)

// Source names the replay in dead letters, logs and the kubesift-origin
// header.
const Source = "replay"

// Extensions are the file names a directory argument expands to: audit
// logs, Events dumps (kubectl get events -o json), NDJSON, and their gzip.
var Extensions = []string{".log", ".json", ".ndjson", ".jsonl"}

// Options configure a Replayer.
type Options struct {
	// Paths are files, or directories whose files with one of Extensions
	// (optionally .gz) are replayed in name order.
	Paths     []string
	Publisher collector.Publisher
	Sanitizer *redact.Sanitizer
	Cluster   record.Cluster
	// BatchSize is the records per Publish (default 500).
	BatchSize int
	// DeadLetterMaxBytes caps the bytes of a bad line kept in its dead
	// letter (default 64 KiB).
	DeadLetterMaxBytes int
	Registerer         prometheus.Registerer
	Logger             *slog.Logger
	// Now stamps the observed time; time.Now when nil.
	Now func() time.Time
}

// Replayer publishes the records of files; see the package doc.
type Replayer struct {
	o     Options
	files []string
	log   *slog.Logger
	m     *metrics
	lim   obs.LogLimiter

	read, published, deadLetters atomic.Int64
	bySource                     [3]atomic.Int64 // audit, event, other
}

// New expands o.Paths and checks that every file can be opened; the error
// names the path.
func New(o Options) (*Replayer, error) {
	if o.Publisher == nil || o.Sanitizer == nil {
		return nil, errors.New("replay: Publisher and Sanitizer are required")
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.DeadLetterMaxBytes <= 0 {
		o.DeadLetterMaxBytes = 64 << 10
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	files, err := Expand(o.Paths)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	return &Replayer{o: o, files: files, log: o.Logger, m: m}, nil
}

// Expand turns paths into the files to replay: a file stays itself; a
// directory becomes its files with one of Extensions (or that plus .gz), in
// name order, not recursing. A path that does not exist, or a directory
// with no such file, is an error naming it.
func Expand(paths []string) ([]string, error) {
	if len(paths) == 0 {
		return nil, errors.New("replay: no file to replay")
	}
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("replay: %w", err)
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("replay: %w", err)
		}
		var found []string
		for _, e := range ents {
			if e.IsDir() || !replayable(e.Name()) {
				continue
			}
			found = append(found, filepath.Join(p, e.Name()))
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("replay: %s: no file ending in %s (optionally .gz)", p, strings.Join(Extensions, ", "))
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

func replayable(name string) bool {
	name = strings.TrimSuffix(name, ".gz")
	for _, ext := range Extensions {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// Files are the files Run replays, in order.
func (r *Replayer) Files() []string { return r.files }

// Progress is a snapshot of what Run has done so far.
type Progress struct {
	// Read counts the records decoded; Published those Publish took;
	// DeadLetters the undecodable documents made durable as dead letters.
	Read, Published, DeadLetters int64
	// Audit and Events split Published by record source.
	Audit, Events int64
}

// Progress returns the counters; safe to call while Run runs.
func (r *Replayer) Progress() Progress {
	return Progress{Read: r.read.Load(), Published: r.published.Load(), DeadLetters: r.deadLetters.Load(),
		Audit: r.bySource[0].Load(), Events: r.bySource[1].Load()}
}

// Run replays every file in order and returns when all are done, when ctx
// ends (ctx.Err()), or when publishing fails for another reason than
// backpressure.
func (r *Replayer) Run(ctx context.Context) error {
	for _, path := range r.files {
		if err := r.replayFile(ctx, path); err != nil {
			return err
		}
		r.m.files.Inc()
	}
	return nil
}

func (r *Replayer) replayFile(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer f.Close()
	var in io.Reader = bufio.NewReaderSize(f, 256<<10)
	gz := strings.HasSuffix(path, ".gz")
	if gz {
		zr, err := gzip.NewReader(in)
		if err != nil {
			return fmt.Errorf("replay: %s: %w", path, err)
		}
		defer zr.Close()
		in = zr
	}
	dec := record.NewDecoder(in, path, record.DecodeOptions{Cluster: r.o.Cluster, Now: r.o.Now})
	batch := make([]*record.Record, 0, r.o.BatchSize)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := r.publish(ctx, batch); err != nil {
			return err
		}
		r.published.Add(int64(len(batch)))
		for _, rec := range batch {
			r.bySource[sourceIndex(rec.Source)].Add(1)
		}
		batch = batch[:0]
		return nil
	}
	for {
		rec, err := dec.Next()
		if err == io.EOF {
			break
		}
		var de *record.DecodeError
		if errors.As(err, &de) {
			if err := r.deadLetter(ctx, f, gz, path, de); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		r.read.Add(1)
		r.m.records.Inc()
		if err := r.o.Sanitizer.Apply(rec); err != nil {
			// Never publish what might still hold a secret.
			r.lim.Warn(r.log, "redaction", "record could not be redacted; sent to the dead-letter topic instead", "file", path, "id", rec.ID, "err", err)
			if err := r.publishDeadLetter(ctx, r.o.Sanitizer.DeadLetter(collector.DeadLetter{
				Data: rec.Object, Source: Source, Origin: path, Offset: -1,
				Reason: collector.ReasonRedaction, Error: err.Error(), Cluster: r.o.Cluster,
			})); err != nil {
				return err
			}
			continue
		}
		batch = append(batch, rec)
		if len(batch) >= r.o.BatchSize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

func sourceIndex(s record.Source) int {
	switch s {
	case record.SourceAudit:
		return 0
	case record.SourceEvent:
		return 1
	}
	return 2
}

// deadLetter makes an undecodable document durable: the whole stretch the
// decoder skipped for it, [Offset, End) — a truncated line runs on into the
// next, and both must land here so no line falls between the records and
// the dead letters — read back from the file (at most DeadLetterMaxBytes,
// scrubbed of anything secret-looking; none for a gzip file, which cannot
// be read back at an offset), and the error naming the file, line and
// field.
func (r *Replayer) deadLetter(ctx context.Context, f *os.File, gz bool, path string, de *record.DecodeError) error {
	r.m.rejected.Inc()
	var data []byte
	if !gz && de.Offset >= 0 && de.End > de.Offset {
		data = make([]byte, min(de.End-de.Offset, int64(r.o.DeadLetterMaxBytes)))
		n, _ := f.ReadAt(data, de.Offset)
		data = bytes.TrimRight(data[:n], "\r\n")
	}
	r.lim.Warn(r.log, "malformed", "undecodable input sent to the dead-letter topic", "err", de.Error())
	return r.publishDeadLetter(ctx, r.o.Sanitizer.DeadLetter(collector.DeadLetter{
		Data: data, Source: Source, Origin: path, Offset: de.Offset, Line: de.Line,
		Reason: de.Reason(), Error: de.Error(), Cluster: r.o.Cluster,
	}))
}

// publish hands one batch to the publisher, waiting out backpressure.
func (r *Replayer) publish(ctx context.Context, recs []*record.Record) error {
	return r.retry(ctx, func() error { return r.o.Publisher.Publish(ctx, recs) })
}

func (r *Replayer) publishDeadLetter(ctx context.Context, dl collector.DeadLetter) error {
	if err := r.retry(ctx, func() error { return r.o.Publisher.PublishDeadLetters(ctx, []collector.DeadLetter{dl}) }); err != nil {
		return err
	}
	r.deadLetters.Add(1)
	return nil
}

// retry calls f until it succeeds, ctx ends, or it fails with an error
// other than collector.ErrBackpressure.
func (r *Replayer) retry(ctx context.Context, f func() error) error {
	b := backoff.Policy{Initial: 50 * time.Millisecond, Max: 2 * time.Second}
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		if !errors.Is(err, collector.ErrBackpressure) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("replay: publish: %w", err)
		}
		r.m.backpressure.Inc()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(b.Wait(attempt)):
		}
	}
}

// metrics are the kubesift_collector_replay_* series.
type metrics struct {
	records, rejected, files, backpressure prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "kubesift_collector_replay_" + name, Help: help})
	}
	m := &metrics{
		records:      c("records_total", "Records decoded from replayed files."),
		rejected:     c("rejected_total", "Undecodable documents of replayed files, sent to the dead-letter topic."),
		files:        c("files_total", "Files replayed to the end."),
		backpressure: c("backpressure_total", "Publish attempts refused with backpressure and retried."),
	}
	if err := obs.Register(reg, m.records, m.rejected, m.files, m.backpressure); err != nil {
		return nil, fmt.Errorf("replay: metrics: %w", err)
	}
	return m, nil
}
