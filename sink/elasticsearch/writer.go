package elasticsearch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/sink"
)

// ErrClosed is returned by Add after Close.
var ErrClosed = errors.New("elasticsearch writer: closed")

// WriterOptions configure a Writer.
type WriterOptions struct {
	Client *Client
	// Config supplies workers, flush_bytes, flush_interval,
	// max_queued_bytes, request_timeout and the retry backoff.
	Config config.ElasticsearchConfig
	// Registerer receives the kubesift_sink_es_* metrics; nil keeps them
	// unregistered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Writer writes documents with the bulk API under the sink.Writer contract:
//
//   - every document is written with the create op and its _id, so a
//     re-delivered record answers 409 and is reported Duplicate;
//   - a document with a Version (a finding's current state) is written with
//     the index op and version_type external: Elasticsearch replaces the
//     stored document only when the version is greater, and answers 409
//     otherwise, which is reported Duplicate (the newer state won) and
//     counted in kubesift_sink_es_docs_version_conflict_total;
//   - per item, 201 is Indexed, 409 Duplicate, 429 and 5xx are retried (only
//     those items) with backoff, any other status is Rejected with
//     Elasticsearch's error type and reason;
//   - a whole request that is refused (429, 5xx) or gets no answer is retried
//     until it succeeds or Close gives up: an Elasticsearch outage pauses the
//     writer, it never fails documents;
//   - documents accepted and not yet done are bounded by max_queued_bytes;
//     Add blocks while that budget is used up, which is what pauses the
//     processor's Kafka consumption;
//   - a bulk request is sent when flush_bytes are buffered or flush_interval
//     has passed, by one of `workers` concurrent senders.
//
// It is a hand-rolled loop on the bulk endpoint rather than
// esutil.BulkIndexer because the contract needs per-item retries of 429s and
// a byte-bounded queue, which BulkIndexer has neither of.
type Writer struct {
	es      *Client
	log     *slog.Logger
	m       *metrics
	backoff backoff.Policy
	timeout time.Duration
	flushAt int
	maxQ    int64

	mu      sync.Mutex
	work    *sync.Cond // signalled when pending grows or the writer stops
	cur     *batch     // being filled
	pending []*batch   // full, waiting for a worker
	queued  int64      // bytes of documents accepted and not done
	space   chan struct{}
	closed  bool // Close was called: no more Adds
	aborted bool // Close's ctx ended: workers stop retrying

	runCtx context.Context // ends when Close gives up
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stop   chan struct{} // stops the interval flusher
}

type item struct {
	doc  sink.Doc
	done func(sink.Result)
	size int64
	// invalid is set for a document Elasticsearch would refuse as part of
	// the request (validation fails the whole bulk, not the item); it is
	// Rejected without being sent, so it cannot cost its batch.
	invalid string
}

// maxIDBytes is Elasticsearch's limit on _id.
const maxIDBytes = 512

// validate reports why d cannot be part of a bulk request ("" if it can).
func validate(d sink.Doc) string {
	switch {
	case d.Index == "":
		return "document without an index"
	case d.ID == "":
		return "document without an _id"
	case d.Version < 0:
		return "negative version"
	case len(d.ID) > maxIDBytes:
		return fmt.Sprintf("_id is %d bytes, Elasticsearch allows %d", len(d.ID), maxIDBytes)
	case len(bytes.TrimSpace(d.Body)) == 0:
		return "document without a body"
	case bytes.IndexByte(d.Body, '\n') >= 0 || bytes.IndexByte(d.Body, '\r') >= 0:
		return "document body spans lines (a bulk request is one document per line)"
	}
	return ""
}

type batch struct {
	items   []item
	bytes   int
	created time.Time
}

// bulkPath asks only for what the result handling reads: on a large bulk
// the full answer is several times the size of this one.
const bulkPath = "/_bulk?filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason,items.*.error.caused_by.type,items.*.error.caused_by.reason"

// NewWriter starts a Writer; Close stops it.
func NewWriter(o WriterOptions) (*Writer, error) {
	if o.Client == nil {
		return nil, errors.New("elasticsearch writer: no client")
	}
	c := o.Config
	if c.Workers <= 0 || c.FlushBytes <= 0 || c.FlushInterval <= 0 || c.MaxQueuedBytes <= 0 {
		return nil, fmt.Errorf("elasticsearch writer: workers, flush_bytes, flush_interval and max_queued_bytes must be positive")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	timeout := c.RequestTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Writer{
		es: o.Client, log: log, m: m, timeout: timeout, flushAt: c.FlushBytes, maxQ: c.MaxQueuedBytes,
		// Attempts 0: retry until Close gives up.
		backoff: backoff.Policy{Initial: c.RetryBackoff, Max: c.RetryMaxBackoff},
		space:   make(chan struct{}),
		runCtx:  ctx, cancel: cancel, stop: make(chan struct{}),
	}
	w.work = sync.NewCond(&w.mu)
	for range c.Workers {
		w.wg.Add(1)
		go w.worker()
	}
	w.wg.Add(1)
	go w.flusher(c.FlushInterval)
	return w, nil
}

// itemSize is the bytes a document takes in a bulk body (action line,
// source, two newlines), which is what the queue budget counts.
func itemSize(d sink.Doc) int64 {
	return int64(len(d.Body) + len(d.Index) + len(d.ID) + 40)
}

// Add accepts a document; done is called exactly once with its fate. It
// blocks while max_queued_bytes are in use and returns an error (the
// document not accepted) only when ctx ends or the Writer is closed.
func (w *Writer) Add(ctx context.Context, d sink.Doc, done func(sink.Result)) error {
	if done == nil {
		done = func(sink.Result) {}
	}
	size := itemSize(d)
	w.mu.Lock()
	// A document larger than the whole budget is still accepted once the
	// queue is empty, so it cannot wedge the writer.
	for !w.closed && w.queued > 0 && w.queued+size > w.maxQ {
		ch := w.space
		w.mu.Unlock()
		w.m.blocked.Inc()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
		w.mu.Lock()
	}
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		w.mu.Unlock()
		return err
	}
	w.queued += size
	w.m.queued.Set(float64(w.queued))
	if w.cur == nil {
		w.cur = &batch{created: time.Now()}
	}
	w.cur.items = append(w.cur.items, item{doc: d, done: done, size: size, invalid: validate(d)})
	w.cur.bytes += int(size)
	if w.cur.bytes >= w.flushAt {
		w.pending = append(w.pending, w.cur)
		w.cur = nil
		w.work.Signal()
	}
	w.mu.Unlock()
	return nil
}

// Close stops accepting documents, flushes what was accepted and waits for
// every done. When ctx ends first, retries stop, the documents still
// undone are left undone (their done is never called; the processor simply
// does not commit them) and Close returns an error saying how many.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.stop)
		if w.cur != nil {
			w.pending = append(w.pending, w.cur)
			w.cur = nil
		}
		close(w.space) // wake blocked Adds: they return ErrClosed
		w.space = make(chan struct{})
		w.work.Broadcast()
	}
	w.mu.Unlock()
	finished := make(chan struct{})
	go func() { w.wg.Wait(); close(finished) }()
	select {
	case <-finished:
		w.cancel()
		return nil
	case <-ctx.Done():
	}
	w.mu.Lock()
	w.aborted = true
	w.work.Broadcast()
	w.mu.Unlock()
	w.cancel()
	<-finished
	w.mu.Lock()
	left := w.queued
	w.mu.Unlock()
	return fmt.Errorf("elasticsearch writer: close: %w (%d bytes of documents not written)", ctx.Err(), left)
}

// flusher sends the filling batch every interval, so a quiet stream's
// documents (and the Kafka offsets behind them) never wait longer.
func (w *Writer) flusher(interval time.Duration) {
	defer w.wg.Done()
	// Ticking at half the interval and flushing batches at least half an
	// interval old sends every document within one interval of its Add.
	t := time.NewTicker(max(interval/2, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		w.mu.Lock()
		if w.cur != nil && time.Since(w.cur.created) >= interval/2 {
			w.pending = append(w.pending, w.cur)
			w.cur = nil
			w.work.Signal()
		}
		w.mu.Unlock()
	}
}

func (w *Writer) worker() {
	defer w.wg.Done()
	for {
		w.mu.Lock()
		for len(w.pending) == 0 && !w.closed && !w.aborted {
			w.work.Wait()
		}
		if w.aborted || len(w.pending) == 0 {
			w.mu.Unlock()
			return
		}
		b := w.pending[0]
		w.pending[0] = nil
		w.pending = w.pending[1:]
		w.mu.Unlock()
		w.send(b)
	}
}

// release returns budget to the queue and wakes blocked Adds.
func (w *Writer) release(n int64) {
	if n == 0 {
		return
	}
	w.mu.Lock()
	w.queued -= n
	w.m.queued.Set(float64(w.queued))
	if !w.closed {
		close(w.space)
		w.space = make(chan struct{})
	}
	w.mu.Unlock()
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// send writes one batch until every item is done or the writer aborts.
func (w *Writer) send(b *batch) {
	items := b.items[:0:0]
	for _, it := range b.items {
		if it.invalid != "" {
			w.finishAll([]item{it}, sink.Result{Status: sink.Rejected, Reason: it.invalid}, RejectInvalidDocument)
			continue
		}
		items = append(items, it)
	}
	if len(items) == 0 {
		return
	}
	buf := bufPool.Get().(*bytes.Buffer)
	defer bufPool.Put(buf)
	var split [][]item // set when a refused request is to be halved
	defer func() {
		for _, part := range split {
			w.send(&batch{items: part})
		}
	}()
	err := sink.Do(w.runCtx, w.backoff, func(ctx context.Context) (bool, error) {
		buf.Reset()
		for _, it := range items {
			appendItem(buf, it.doc)
		}
		actx, cancel := context.WithTimeout(ctx, w.timeout)
		start := time.Now()
		status, resp, h, err := Call(actx, w.es, http.MethodPost, bulkPath, buf.Bytes())
		cancel()
		w.m.latency.Observe(time.Since(start).Seconds())
		if err != nil {
			w.m.requests.WithLabelValues(requestError).Inc()
			return sink.Retryable(0, err), fmt.Errorf("bulk: %w", err)
		}
		if status/100 != 2 {
			se := StatusError("bulk", status, resp, h)
			if se.Retryable() {
				w.m.requests.WithLabelValues(requestRetryable).Inc()
				return true, se
			}
			if status == http.StatusUnauthorized || status == http.StatusForbidden {
				// Elasticsearch refuses kubesift, not these documents: an
				// expired API key or a revoked role would otherwise send
				// every record to the dead-letter topic. Hold them — Add
				// blocks, the consumer stops, Kafka keeps the records — and
				// retry until the credentials are fixed (sink package doc).
				w.m.requests.WithLabelValues(requestUnauthorized).Inc()
				return true, se
			}
			w.m.requests.WithLabelValues(requestFailed).Inc()
			if (status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge) && len(items) > 1 {
				// One document can make the whole request invalid (or too
				// large): halve the batch until the culprit is alone, so
				// it costs only itself.
				half := len(items) / 2
				split = [][]item{items[:half:half], items[half:]}
				items = nil
				return false, nil
			}
			// The request itself is refused for good: the classifier says
			// fail, so the items are Rejected with why.
			w.finishAll(items, sink.Result{Status: sink.Rejected, Reason: clip(se.Error(), 500)}, "bulk_"+strconv.Itoa(status))
			items = nil
			return false, nil
		}
		w.m.requests.WithLabelValues(requestOK).Inc()
		retry, rerr := w.results(items, resp)
		items = retry
		if len(retry) > 0 {
			return true, rerr
		}
		return false, nil
	}, func(n int, err error) {
		if isItemRetry(err) {
			w.m.retries.WithLabelValues(retryItem).Add(float64(len(items)))
		} else {
			w.m.retries.WithLabelValues(retryRequest).Inc()
		}
		if n == 1 || n%10 == 0 {
			w.log.Warn("elasticsearch bulk: retrying", "attempt", n, "documents", len(items), "error", err)
		}
	})
	if err != nil && len(items) > 0 {
		// Close gave up: these documents stay undone (never acknowledged,
		// so Kafka re-delivers them); their budget is returned.
		var n int64
		for _, it := range items {
			n += it.size
		}
		w.release(n)
	}
}

// itemRetry is the error of an attempt whose answer asked for some items to
// be retried.
type itemRetry struct {
	n      int
	reason string
}

func (e *itemRetry) Error() string {
	return fmt.Sprintf("bulk: %d documents refused for now: %s", e.n, e.reason)
}

func isItemRetry(err error) bool {
	var ir *itemRetry
	return errors.As(err, &ir)
}

// bulkAnswer is the filtered bulk response.
type bulkAnswer struct {
	Errors bool                  `json:"errors"`
	Items  []map[string]bulkItem `json:"items"`
}

type bulkItem struct {
	Status int      `json:"status"`
	Error  *esError `json:"error"`
}

var answerJSON = jsoniter.ConfigFastest

// results applies a 2xx bulk answer to items and returns the items to retry.
func (w *Writer) results(items []item, resp []byte) ([]item, error) {
	var a bulkAnswer
	if err := answerJSON.Unmarshal(resp, &a); err != nil || (a.Errors && len(a.Items) != len(items)) {
		// An answer that cannot be matched to the items: send them all
		// again; what was written answers 409 and is reported Duplicate.
		return items, &itemRetry{n: len(items), reason: "unreadable bulk answer"}
	}
	if !a.Errors {
		// Every item succeeded; nothing in the answer needs reading.
		w.finishAll(items, sink.Result{Status: sink.Indexed}, "")
		return nil, nil
	}
	var (
		retry    []item
		released int64
		reason   string
	)
	for i, it := range items {
		var st bulkItem
		for _, v := range a.Items[i] { // one key: the op name
			st = v
		}
		var res sink.Result
		switch {
		case st.Status == http.StatusOK || st.Status == http.StatusCreated:
			res = sink.Result{Status: sink.Indexed}
			w.m.indexed.Inc()
		case st.Status == http.StatusConflict:
			res = sink.Result{Status: sink.Duplicate}
			if it.doc.Version > 0 {
				w.m.versionConflict.Inc()
			} else {
				w.m.duplicate.Inc()
			}
		case sink.Retryable(st.Status, nil):
			retry = append(retry, it)
			if reason == "" {
				reason = strconv.Itoa(st.Status) + " " + st.Error.String()
			}
			continue
		default:
			typ := RejectUnknown
			if st.Error != nil && st.Error.Type != "" {
				typ = st.Error.Type
			}
			res = sink.Result{Status: sink.Rejected, Reason: st.Error.String()}
			if res.Reason == "" {
				res.Reason = "HTTP " + strconv.Itoa(st.Status)
			}
			w.m.rejected.WithLabelValues(typ).Inc()
		}
		released += it.size
		it.done(res)
	}
	w.release(released)
	if len(retry) > 0 {
		return retry, &itemRetry{n: len(retry), reason: reason}
	}
	return nil, nil
}

// finishAll gives every item the same result.
func (w *Writer) finishAll(items []item, res sink.Result, rejectLabel string) {
	var n int64
	for _, it := range items {
		n += it.size
		switch res.Status {
		case sink.Indexed:
			w.m.indexed.Inc()
		case sink.Rejected:
			w.m.rejected.WithLabelValues(rejectLabel).Inc()
		}
		it.done(res)
	}
	w.release(n)
}

// appendItem writes the action line and source of one document.
func appendItem(buf *bytes.Buffer, d sink.Doc) {
	if d.Version > 0 {
		buf.WriteString(`{"index":{"_index":`)
	} else {
		buf.WriteString(`{"create":{"_index":`)
	}
	writeJSONString(buf, d.Index)
	buf.WriteString(`,"_id":`)
	writeJSONString(buf, d.ID)
	if d.Version > 0 {
		// external, not external_gte: an equal version is the same
		// transition replayed, and refusing it keeps the first write's
		// timestamps instead of the replay's.
		buf.WriteString(`,"version":`)
		buf.WriteString(strconv.FormatInt(d.Version, 10))
		buf.WriteString(`,"version_type":"external"`)
	}
	buf.WriteString("}}\n")
	buf.Write(d.Body)
	buf.WriteByte('\n')
}

// writeJSONString writes s as a JSON string (index names and IDs: short,
// usually plain ASCII).
func writeJSONString(buf *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	buf.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				buf.WriteByte('\\')
				buf.WriteByte(c)
			case c < 0x20:
				buf.WriteString(`\u00`)
				buf.WriteByte(hex[c>>4])
				buf.WriteByte(hex[c&0xf])
			default:
				buf.WriteByte(c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf.WriteString(`\ufffd`)
		} else {
			buf.WriteString(s[i : i+size])
		}
		i += size
	}
	buf.WriteByte('"')
}
