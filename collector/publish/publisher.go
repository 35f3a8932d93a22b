package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/kafkaopts"
	"github.com/kubesift/kubesift/record"
)

// ErrTooLarge is the error of a record larger than publish.batch_bytes (the
// sources' size policy keeps records below it). Publish does not return it:
// such a record goes to the dead-letter topic, its error in the
// kubesift-dlq-error header, and the rest of its batch is published.
var ErrTooLarge = errors.New("record larger than publish.batch_bytes")

// errClosed is returned by Publish after Close began.
var errClosed = fmt.Errorf("publish: publisher is closing: %w", collector.ErrBackpressure)

// errAckTimeout: Kafka did not acknowledge before the deadline.
var errAckTimeout = errors.New("no acknowledgement within publish.ack_timeout")

// Options configures New.
type Options struct {
	// Kafka is the kafka section (brokers, client id, topics, TLS, SASL).
	Kafka config.KafkaConfig
	// Publish is the publish section (batching, timeouts, spool).
	Publish config.PublishConfig
	// Logger receives the publisher's logs; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the publisher's metrics (kubesift_collector_*;
	// one Publisher per registry); nil means a private registry (metrics
	// not exported).
	Registerer prometheus.Registerer
	// Transport replaces the transport built from Kafka; for tests that
	// inject network faults. Leave nil in production.
	Transport kafka.RoundTripper
}

// Publisher is the collector's collector.Publisher: it writes records to
// Kafka with acks=all and keeps them in a bounded on-disk spool while Kafka
// is unreachable or slow. Safe for concurrent use. See the package doc.
type Publisher struct {
	cfg    config.PublishConfig
	topics [kindMax]string
	log    *slog.Logger
	m      *metrics
	w      *kafka.Writer
	// drainW sends the drainer's rounds (drain.go).
	drainW *kafka.Writer
	// single writes one record per produce request, synchronously: the
	// drainer's way to find which record of a refused batch Kafka refuses
	// (refuse.go).
	single    *kafka.Writer
	transport *kafka.Transport // built here (closed here), or nil
	sp        *spool
	win       *window

	// mu orders the choice "Kafka or spool" against the drainer's switch
	// back to Kafka: while spooling is true every Publish appends to the
	// spool, so records queue behind the spooled ones instead of
	// overtaking them.
	mu       sync.Mutex
	spooling bool
	closed   bool
	active   sync.WaitGroup // Publish calls in progress

	wake        chan struct{} // tells the drainer there is spooled data (cap 1)
	abort       chan struct{} // closed when Close's deadline passes
	stop        chan struct{} // closed by Close: the drainer stops
	drainCtx    context.Context
	drainCancel context.CancelFunc
	drainDone   chan struct{}
	// missing holds the kinds whose topic the drainer found missing and
	// has not written to since (refuse.go). Its own lock: mu is held
	// across spool appends (fsync), and the drainer should not wait on one
	// after each record it sends alone.
	missingMu sync.Mutex
	missing   map[kind]bool

	logLimit rateLimit
}

var _ collector.Publisher = (*Publisher)(nil)

// New opens the spool (draining what a previous run left in it first) and
// prepares the Kafka writer. Connections are made on first use, so New
// succeeds while Kafka is down; records then go to the spool.
func New(o Options) (*Publisher, error) {
	if len(o.Kafka.Brokers) == 0 {
		return nil, errors.New("publish: kafka.brokers: at least one broker is required")
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "publish")
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := newMetrics()
	comp, err := compression(o.Publish.Compression)
	if err != nil {
		return nil, err
	}
	p := &Publisher{
		cfg:       o.Publish,
		log:       log,
		m:         m,
		wake:      make(chan struct{}, 1),
		abort:     make(chan struct{}),
		stop:      make(chan struct{}),
		drainDone: make(chan struct{}),
		missing:   map[kind]bool{},
	}
	p.topics[kindAudit] = o.Kafka.Topics.Audit
	p.topics[kindEvent] = o.Kafka.Topics.Events
	p.topics[kindObject] = o.Kafka.Topics.Objects
	p.topics[kindDLQ] = o.Kafka.Topics.DLQ
	for _, t := range p.topics[kindAudit:] {
		m.topicMissing.WithLabelValues(t).Set(0)
	}
	p.win = newWindow(o.Publish.MaxInFlightBytes, func(n int64) { m.inFlight.Set(float64(n)) })

	rt := o.Transport
	if rt == nil {
		t, err := kafkaopts.Transport(o.Kafka)
		if err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		p.transport, rt = t, t
	}
	// Async with a Completion callback: WriteMessages only queues, and
	// every message's fate (ack or error after MaxAttempts) comes back
	// through completion, where the Publish waiting for it is told.
	p.w = newWriter(o, rt, comp, log, o.Publish.BatchSize, o.Publish.BatchTimeout)
	p.w.Async, p.w.Completion = true, p.completion
	// The drainer's own writer, so that a round never shares a partition
	// batch with records of direct Publish calls still in flight (a shared
	// batch could be split, and its halves acknowledged out of order). Its
	// batches are filled by one WriteMessages call each (drainRound), so
	// they need no time to fill.
	p.drainW = newWriter(o, rt, comp, log, o.Publish.BatchSize, time.Millisecond)
	p.drainW.Async, p.drainW.Completion = true, p.completion
	p.single = newWriter(o, rt, comp, log, 1, time.Millisecond)

	p.sp, err = openSpool(spoolOptions{
		Dir:           o.Publish.Spool.Dir,
		MaxBytes:      o.Publish.Spool.MaxBytes,
		SegmentBytes:  o.Publish.Spool.SegmentBytes,
		Fsync:         o.Publish.Spool.Fsync,
		FsyncInterval: o.Publish.Spool.FsyncInterval,
		Logger:        log,
		OnChange: func(bytes int64, segments int) {
			m.spoolBytes.Set(float64(bytes))
			m.spoolSegments.Set(float64(segments))
		},
		OnTruncate: func(cause string, bytes int64) { m.spoolCut.WithLabelValues(cause).Add(float64(bytes)) },
	})
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	m.oldest = p.sp.OldestAge
	if err := m.register(reg); err != nil {
		p.sp.Close()
		return nil, err
	}
	if !p.sp.Empty() {
		// Left by a previous run: drain it before anything new goes to
		// Kafka directly, so the old records keep their place in line.
		bytes, segs := p.sp.Stats()
		log.Info("spool holds records from a previous run; draining them first", "bytes", bytes, "segments", segs)
		p.setSpooling(true)
	}
	p.drainCtx, p.drainCancel = context.WithCancel(context.Background())
	go p.drain()
	return p, nil
}

func compression(name string) (kafka.Compression, error) {
	switch name {
	case "zstd", "":
		return kafka.Zstd, nil
	case "lz4":
		return kafka.Lz4, nil
	case "snappy":
		return kafka.Snappy, nil
	case "gzip":
		return kafka.Gzip, nil
	case "none":
		return 0, nil
	}
	return 0, fmt.Errorf("publish.compression: %q is not one of zstd, lz4, snappy, gzip, none", name)
}

// Publish makes every record of recs durable: acknowledged by Kafka
// (acks=all) or written to the spool. A record that can never be sent
// (larger than publish.batch_bytes, or not encodable) is replaced in the
// batch by its dead letter (reject.go). It returns an error wrapping
// collector.ErrBackpressure when the spool is full (or failing) or the
// publisher is closing, or ctx's error.
func (p *Publisher) Publish(ctx context.Context, recs []*record.Record) error {
	return p.publishRecords(ctx, recs, nil)
}

// For returns a collector.Publisher for one source: it publishes through p
// and marks every record's message with HeaderOrigin = source, so that the
// copies the audit webhook and the audit tail deliver of one record can be
// told apart. Dead letters carry their source already (HeaderDLQSource).
func (p *Publisher) For(source string) collector.Publisher {
	return &originPublisher{p: p, origin: []byte(source)}
}

type originPublisher struct {
	p      *Publisher
	origin []byte
}

func (o *originPublisher) Publish(ctx context.Context, recs []*record.Record) error {
	return o.p.publishRecords(ctx, recs, o.origin)
}

func (o *originPublisher) PublishDeadLetters(ctx context.Context, dls []collector.DeadLetter) error {
	return o.p.PublishDeadLetters(ctx, dls)
}

func (p *Publisher) publishRecords(ctx context.Context, recs []*record.Record, origin []byte) error {
	return p.beginRecords(ctx, recs, origin)(ctx)
}

func (p *Publisher) beginRecords(ctx context.Context, recs []*record.Record, origin []byte) func(context.Context) error {
	result := func(err error) func(context.Context) error { return func(context.Context) error { return err } }
	if len(recs) == 0 {
		return result(nil)
	}
	start := time.Now()
	msgs := make([]outMsg, len(recs))
	var rejected []string // reasons of the records replaced by dead letters
	for i, r := range recs {
		m, err := fromRecord(r, origin)
		if err == nil && m.wireSize() > p.cfg.BatchBytes {
			err = fmt.Errorf("record %s is %d bytes (limit %d): %w", r.ID, m.wireSize(), p.cfg.BatchBytes, ErrTooLarge)
		}
		if err != nil {
			// One record that can never be sent must not fail its batch:
			// its dead letter takes its place and shares the batch's fate.
			reason := reasonEncode
			if errors.Is(err, ErrTooLarge) {
				reason = reasonTooLarge
			}
			p.m.failed.WithLabelValues(reason).Inc()
			m = p.rejectRecord(r, m.value, origin, reason, err)
			rejected = append(rejected, reason)
		}
		msgs[i] = m
	}
	wait := p.begin(ctx, msgs, start)
	if len(rejected) == 0 {
		return wait
	}
	return func(ctx context.Context) error {
		if err := wait(ctx); err != nil {
			return err
		}
		for _, reason := range rejected {
			p.m.refused.WithLabelValues(reason).Inc()
		}
		p.m.deadLetters.Add(float64(len(rejected)))
		return nil
	}
}

// PublishDeadLetters makes dead letters durable on the dead-letter topic
// (kafka.topics.dlq) as one batch, with the HeaderDLQ* headers and the
// original bytes as the value. Data too large for publish.batch_bytes is cut
// (and marked with HeaderDLQTruncated) rather than refused.
func (p *Publisher) PublishDeadLetters(ctx context.Context, dls []collector.DeadLetter) error {
	if len(dls) == 0 {
		return nil
	}
	msgs := make([]outMsg, len(dls))
	for i, dl := range dls {
		m, cut := fromDeadLetter(dl, p.cfg.BatchBytes)
		if cut {
			p.m.dlqTruncated.Inc()
			p.log.Warn("dead letter cut to fit publish.batch_bytes", "source", dl.Source, "origin", dl.Origin,
				"bytes", len(dl.Data), "kept", len(m.value))
		}
		msgs[i] = m
	}
	if err := p.publish(ctx, msgs, time.Now()); err != nil {
		return err
	}
	p.m.deadLetters.Add(float64(len(dls)))
	return nil
}

// publish is the common path of Publish and PublishDeadLetters.
func (p *Publisher) publish(ctx context.Context, msgs []outMsg, start time.Time) error {
	return p.begin(ctx, msgs, start)(ctx)
}

// Begin starts publishing recs like Publish and returns without waiting for
// Kafka's acknowledgements; calling the returned function (exactly once)
// waits and returns what Publish would have. Batches begun one after the
// other are queued on the Kafka writer in that order, so a source can keep
// several batches in flight without reordering any key (collector.Pipeliner).
func (p *Publisher) Begin(ctx context.Context, recs []*record.Record) func(context.Context) error {
	return p.beginRecords(ctx, recs, nil)
}

func (o *originPublisher) Begin(ctx context.Context, recs []*record.Record) func(context.Context) error {
	return o.p.beginRecords(ctx, recs, o.origin)
}

// begin queues msgs (or spools them) and returns the wait for the outcome.
// Every path through it either finishes at once (a function returning the
// result) or leaves exactly one p.active to be released by the wait.
func (p *Publisher) begin(ctx context.Context, msgs []outMsg, start time.Time) func(context.Context) error {
	result := func(err error) func(context.Context) error { return func(context.Context) error { return err } }
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return result(p.finish(start, errClosed))
	}
	p.active.Add(1)
	spooling := p.spooling
	p.mu.Unlock()

	if spooling {
		// Encode outside the lock, then re-check: the drainer may have
		// emptied the spool meanwhile, and then Kafka is the right place.
		payloads := encodeAll(msgs)
		p.mu.Lock()
		if p.spooling {
			err := p.sp.Append(payloads)
			p.mu.Unlock()
			err = p.spooled(start, len(msgs), err)
			p.active.Done()
			return result(err)
		}
		p.mu.Unlock()
	}

	deadline := start.Add(p.cfg.AckTimeout)
	t, err := p.send(ctx, p.w, msgs, deadline, "direct")
	if err != nil {
		defer p.active.Done()
		if ctx.Err() != nil {
			return result(p.finish(start, fmt.Errorf("publish: %w", ctx.Err())))
		}
		reason := reasonUnavail
		switch {
		case errors.Is(err, errWindowTimeout):
			reason = reasonWindow
		case errors.Is(err, errAborted):
			reason = reasonShutdown
		}
		p.m.failed.WithLabelValues(reason).Add(float64(len(msgs)))
		return result(p.fallback(start, msgs, reason, err))
	}
	return func(ctx context.Context) error {
		defer p.active.Done()
		return p.await(ctx, t, msgs, start, deadline)
	}
}

// await waits for the acknowledgements of a send and spools what Kafka did
// not acknowledge.
func (p *Publisher) await(ctx context.Context, t *tracker, msgs []outMsg, start, deadline time.Time) error {
	werr := t.wait(ctx, deadline, p.abort)
	if werr != nil && ctx.Err() != nil {
		// The caller gave up: it will retry the batch; whatever the writer
		// still delivers arrives twice, with the same record IDs.
		t.unacked()
		return p.finish(start, fmt.Errorf("publish: %w", ctx.Err()))
	}
	rest, pending := t.unacked()
	if len(rest) == 0 {
		p.m.latency.WithLabelValues("acked").Observe(time.Since(start).Seconds())
		return nil
	}
	reason := reasonWriteError
	if pending > 0 {
		reason = reasonAckTimeout
		if errors.Is(werr, errAborted) {
			reason = reasonShutdown
		}
		p.m.failed.WithLabelValues(reason).Add(float64(pending))
	}
	cause := t.firstErr()
	if cause == nil {
		cause = werr
	}
	left := make([]outMsg, len(rest))
	for i, idx := range rest {
		left[i] = msgs[idx]
	}
	return p.fallback(start, left, reason, cause)
}

// fallback writes the records Kafka did not take to the spool and switches
// to spooling, so later records queue behind them.
func (p *Publisher) fallback(start time.Time, msgs []outMsg, reason string, cause error) error {
	payloads := encodeAll(msgs)
	p.mu.Lock()
	if !p.spooling {
		p.log.Warn("Kafka unavailable or slow; spooling records to disk until it is back",
			"reason", reason, "error", cause, "spool", p.cfg.Spool.Dir)
		p.setSpooling(true)
	}
	err := p.sp.Append(payloads)
	p.mu.Unlock()
	return p.spooled(start, len(msgs), err)
}

// spooled finishes a Publish whose records went to the spool.
func (p *Publisher) spooled(start time.Time, n int, err error) error {
	p.kick()
	switch {
	case err == nil:
		p.m.spooled.Add(float64(n))
		p.m.latency.WithLabelValues("spooled").Observe(time.Since(start).Seconds())
		return nil
	case errors.Is(err, errSpoolFull):
		err = fmt.Errorf("publish: spool at publish.spool.max_bytes: %w", collector.ErrBackpressure)
	case errors.Is(err, errSpoolClosed):
		err = errClosed
	default:
		// A disk error: the records are not durable, so the caller must
		// keep its input and retry — the same answer as a full spool.
		if p.logLimit.allow("spool-error", 10*time.Second) {
			p.log.Error("spool write failed; refusing records (backpressure)", "error", err)
		}
		err = fmt.Errorf("publish: %w: %w", collector.ErrBackpressure, err)
	}
	return p.finish(start, err)
}

// finish records the latency of a failed Publish and counts backpressure.
func (p *Publisher) finish(start time.Time, err error) error {
	p.m.latency.WithLabelValues("error").Observe(time.Since(start).Seconds())
	if errors.Is(err, collector.ErrBackpressure) {
		p.m.backpressure.Inc()
	}
	return err
}

func (p *Publisher) setSpooling(on bool) {
	p.spooling = on
	if on {
		p.m.spooling.Set(1)
	} else {
		p.m.spooling.Set(0)
	}
}

func (p *Publisher) kick() {
	select {
	case p.wake <- struct{}{}:
	default: // the drainer already has a wake-up pending
	}
}

// encodeAll encodes msgs for the spool into one buffer.
func encodeAll(msgs []outMsg) [][]byte {
	size := 0
	for i := range msgs {
		size += int(msgs[i].wireSize())
	}
	buf := make([]byte, 0, size)
	out := make([][]byte, len(msgs))
	for i := range msgs {
		n := len(buf)
		buf = encodePayload(buf, &msgs[i])
		out[i] = buf[n:len(buf):len(buf)]
	}
	return out
}

// newWriter is a kafka-go Writer with the publisher's settings: murmur2 on
// the key (the Java client's default partitioner, so any other producer or
// Streams app agrees on where a key lives; every writer here agrees too, so
// order per key holds whichever one sends) — on the objects topic murmur2 of
// the key's cluster part (clusterBalancer) —, acks=all, and kafka-go's own
// per-attempt logging only at debug level — the publisher logs outages
// itself, once per transition. Records without a key (none today) are
// spread at random. Synchronous unless the caller sets Async.
func newWriter(o Options, rt kafka.RoundTripper, comp kafka.Compression, log *slog.Logger, batchSize int, batchTimeout time.Duration) *kafka.Writer {
	return &kafka.Writer{
		Addr:            kafka.TCP(o.Kafka.Brokers...),
		Balancer:        clusterBalancer{objects: o.Kafka.Topics.Objects},
		MaxAttempts:     o.Publish.MaxAttempts,
		WriteBackoffMin: 100 * time.Millisecond,
		WriteBackoffMax: time.Second,
		BatchSize:       batchSize,
		BatchBytes:      o.Publish.BatchBytes,
		BatchTimeout:    batchTimeout,
		ReadTimeout:     o.Publish.WriteTimeout,
		WriteTimeout:    o.Publish.WriteTimeout,
		RequiredAcks:    kafka.RequireAll,
		Compression:     comp,
		Transport:       rt,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug(fmt.Sprintf(msg, args...), "source", "kafka-go")
			}
		}),
	}
}

// send hands msgs to writer w (p.w or p.drainW) after taking room in the
// in-flight window. On error nothing was queued.
func (p *Publisher) send(ctx context.Context, w *kafka.Writer, msgs []outMsg, deadline time.Time, path string) (*tracker, error) {
	var total int64
	for i := range msgs {
		total += msgs[i].wireSize()
	}
	if err := p.win.acquire(ctx, total, deadline, p.abort); err != nil {
		return nil, err
	}
	t := newTracker(len(msgs))
	kms := make([]kafka.Message, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		t.refs[i] = msgRef{t: t, i: int32(i), size: m.wireSize()}
		kms[i] = kafka.Message{
			Topic:   p.topics[m.kind],
			Key:     m.key,
			Value:   m.value,
			Headers: m.headers,
			// A pointer into t.refs: no allocation per message, and
			// completion finds the tracker and index from it.
			WriterData: &t.refs[i],
		}
	}
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// In async mode WriteMessages only looks up partitions (metadata,
	// normally cached) and queues; it fails before queueing anything.
	if err := w.WriteMessages(wctx, kms...); err != nil {
		p.win.release(total)
		return nil, err
	}
	p.m.sent.WithLabelValues(path).Add(float64(len(msgs)))
	return t, nil
}

// completion is the writer's Completion callback: called once per
// partition batch, from the writer's goroutines, after the batch was
// acknowledged or failed its last attempt.
func (p *Publisher) completion(msgs []kafka.Message, err error) {
	var bytes int64
	n := 0
	for i := range msgs {
		ref, ok := msgs[i].WriterData.(*msgRef)
		if !ok {
			continue
		}
		bytes += ref.size
		ref.t.complete(int(ref.i), err)
		n++
	}
	p.win.release(bytes)
	if err != nil {
		p.m.failed.WithLabelValues(reasonWriteError).Add(float64(n))
		return
	}
	p.m.acked.Add(float64(n))
}

// Stats is a snapshot of the publisher's state (for readiness checks and
// tests).
type Stats struct {
	// Spooling is true while new records go to the spool.
	Spooling bool
	// SpoolBytes is the size of the spool segments on disk.
	SpoolBytes int64
	// SpoolSegments is the number of spool segment files.
	SpoolSegments int
	// MissingTopics are the topics the drainer found missing and waits
	// for, sorted (refuse.go).
	MissingTopics []string
}

// Stats returns a snapshot of the publisher's state.
func (p *Publisher) Stats() Stats {
	p.mu.Lock()
	spooling := p.spooling
	p.mu.Unlock()
	p.missingMu.Lock()
	var missing []string
	for k := range p.missing {
		missing = append(missing, p.topics[k])
	}
	p.missingMu.Unlock()
	slices.Sort(missing)
	b, s := p.sp.Stats()
	return Stats{Spooling: spooling, SpoolBytes: b, SpoolSegments: s, MissingTopics: missing}
}

// Close stops taking records (Publish then returns ErrBackpressure), lets
// Publish calls in progress finish, stops the drainer, flushes the writer
// and waits for outstanding acknowledgements up to ctx, then closes the
// spool. When ctx ends first, Publish calls still waiting for Kafka spool
// their records at once; spooled records stay on disk for the next start.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()

	var errs []error
	// Publish calls end by their ack deadline at the latest; on Close's
	// deadline they are told to spool now. Either way they end with their
	// records durable (or with an error the caller sees).
	idle := make(chan struct{})
	go func() {
		p.active.Wait()
		close(idle)
	}()
	select {
	case <-idle:
	case <-ctx.Done():
		close(p.abort)
		<-idle // now bounded by one spool append each
	}

	// The drainer stops; a round in flight is not committed and is sent
	// again after the next start.
	close(p.stop)
	p.drainCancel()
	<-p.drainDone

	// Writer.Close flushes partial batches and waits for every
	// outstanding produce. Those records are all spooled or were refused
	// already, so waiting is only for tidiness — bounded by ctx.
	wdone := make(chan struct{})
	go func() {
		p.w.Close()
		p.drainW.Close()
		p.single.Close()
		close(wdone)
	}()
	select {
	case <-wdone:
	case <-ctx.Done():
		p.log.Warn("Kafka writer still retrying at close; leaving it (its records are in the spool)")
		errs = append(errs, fmt.Errorf("publish: close writer: %w", ctx.Err()))
	}
	if p.transport != nil {
		p.transport.CloseIdleConnections()
	}
	if err := p.sp.Close(); err != nil {
		errs = append(errs, fmt.Errorf("publish: %w", err))
	}
	return errors.Join(errs...)
}

// msgRef ties a queued kafka.Message to the Publish waiting for it.
type msgRef struct {
	t    *tracker
	i    int32
	size int64
}

// tracker follows the messages of one send until each is acknowledged or
// failed.
type tracker struct {
	refs []msgRef

	mu      sync.Mutex
	state   []msgState
	errs    []error // per message, allocated on the first failure
	pending int
	err     error
	done    chan struct{} // closed when pending reaches 0
}

type msgState uint8

const (
	msgPending msgState = iota
	msgAcked
	msgFailed
)

func newTracker(n int) *tracker {
	return &tracker{
		refs:    make([]msgRef, n),
		state:   make([]msgState, n),
		pending: n,
		done:    make(chan struct{}),
	}
}

func (t *tracker) complete(i int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state[i] != msgPending {
		return
	}
	if err != nil {
		t.state[i] = msgFailed
		if t.err == nil {
			t.err = err
		}
		if t.errs == nil {
			t.errs = make([]error, len(t.state))
		}
		t.errs[i] = err
	} else {
		t.state[i] = msgAcked
	}
	t.pending--
	if t.pending == 0 {
		close(t.done)
	}
}

// wait blocks until every message completed, the deadline, ctx or abort.
func (t *tracker) wait(ctx context.Context, deadline time.Time, abort <-chan struct{}) error {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-t.done:
		return nil
	case <-timer.C:
		return errAckTimeout
	case <-ctx.Done():
		return ctx.Err()
	case <-abort:
		return errAborted
	}
}

// unacked returns, in order, the indexes of messages not acknowledged
// (failed or still pending) and how many of them are still pending. Late
// completions after it only update counters and the window.
func (t *tracker) unacked() (idx []int, pending int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, s := range t.state {
		if s != msgAcked {
			idx = append(idx, i)
		}
	}
	return idx, t.pending
}

// anyMayBePermanent says whether a failed message failed with an error
// that may be a refusal for good (refuse.go).
func (t *tracker) anyMayBePermanent() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, err := range t.errs {
		if err != nil && mayBePermanent(err) {
			return true
		}
	}
	return false
}

func (t *tracker) firstErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// rateLimit lets a log line through at most once per interval per key.
type rateLimit struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (r *rateLimit) allow(key string, every time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if t, ok := r.last[key]; ok && now.Sub(t) < every {
		return false
	}
	if r.last == nil {
		r.last = map[string]time.Time{}
	}
	r.last[key] = now
	return true
}
