package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
)

// Durable rule state (processor.rule_state): each assigned partition's
// stateful-rule memory is a rules.Scope, restored from the partition's
// changelog before the partition's first record is read and written back,
// change by change, as records are evaluated. rules.Scope states the
// contract; this file keeps the processor's side of it:
//
//   - Restore reads changelog partition p (p: the input partition's
//     number) from its first offset up to the end offset it had when the
//     restore began. Nothing of the input partition is read before.
//   - A record's changes are written only once every other part of its
//     message is done (its documents, its alerts on Kafka): a changelog that
//     holds a record's changes proves its alerts are out. They are then a
//     part of the message like any other: its offset is acknowledged, and
//     may be committed, only after Kafka acknowledged them.
//   - Changes are written in record order, one partition's batches one at
//     a time, each retried whole until acknowledged: a later state of a
//     group never lands before an earlier one. Once a message is abandoned
//     (shutdown, drain timeout), nothing after it is written: its state is
//     re-made from the re-delivered records by the next owner.

// ScopedEvaluator is an Evaluator that keeps the stateful rules' memory
// per partition (rules.Engine); processor.rule_state needs one. A wrapper
// of an Evaluator that is not one returns a nil Scope from NewScope.
type ScopedEvaluator interface {
	Evaluator
	NewScope(o rules.ScopeOptions) *rules.Scope
	EvalIn(r *record.Record, sc *rules.Scope, offset int64) []rules.Alert
}

// stateMetrics are the durable rule state's series, registered only when
// it is enabled.
type stateMetrics struct {
	writes        *prometheus.CounterVec // reason
	writeErrors   prometheus.Counter
	restored      *prometheus.CounterVec // result
	restoreErrors prometheus.Counter
	restoreTime   prometheus.Histogram
}

// Results of restoring one changelog entry (metric label).
const (
	restoreApplied    = "applied"
	restoreOtherTopic = "other_topic"
	restoreStale      = "stale"
	restoreBad        = "bad"
)

func newStateMetrics() *stateMetrics {
	const ns, sub = "kubesift", "processor"
	m := &stateMetrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rule_state_writes_total",
			Help: "Rule-state changelog messages acknowledged by Kafka, by reason (update; a tombstone: done, evicted, expired, stale; checkpoint)."}, []string{"reason"}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rule_state_write_errors_total",
			Help: "Rule-state changelog writes Kafka did not acknowledge (retried until it does)."}),
		restored: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rule_state_restored_total",
			Help: "Rule-state changelog entries read while restoring a partition, by result (applied, other_topic, stale: deleted, bad: skipped)."}, []string{"result"}),
		restoreErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rule_state_restore_errors_total",
			Help: "Partition restores that failed (Kafka or the changelog partition not there, a read failing part-way); each is retried from an empty state while the partition waits."}),
		restoreTime: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "rule_state_restore_seconds",
			Help: "Time to restore one partition's rule state from the changelog.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
	}
	for _, r := range []string{rules.ReasonUpdate, rules.ReasonDone, rules.ReasonEvicted, rules.ReasonExpired, rules.ReasonStale, rules.ReasonCheckpoint} {
		m.writes.WithLabelValues(r)
	}
	for _, r := range []string{restoreApplied, restoreOtherTopic, restoreStale, restoreBad} {
		m.restored.WithLabelValues(r)
	}
	return m
}

func (m *stateMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.writes, m.writeErrors, m.restored, m.restoreErrors, m.restoreTime}
}

// stateLog reads and writes the rule-state changelog topic.
type stateLog struct {
	eval    ScopedEvaluator
	topic   string
	rc      config.ProcessorRuleStateConfig
	k       config.KafkaConfig
	pc      config.ProcessorConfig
	dialer  *kafka.Dialer
	client  *kafka.Client
	w       *kafka.Writer
	backoff backoff.Policy
	m       *stateMetrics
	log     *slog.Logger
	limiter *obs.LogLimiter
	// life is the processor's lifetime: writes are retried until it ends.
	life context.Context
}

func newStateLog(o Options, eval ScopedEvaluator, dialer *kafka.Dialer, rt kafka.RoundTripper, lim *obs.LogLimiter, life context.Context) *stateLog {
	pc := o.Processor
	return &stateLog{
		eval: eval, topic: pc.StateTopic(), rc: pc.RuleState, k: o.Kafka, pc: pc, dialer: dialer,
		client: &kafka.Client{Addr: kafka.TCP(o.Kafka.Brokers...), Timeout: 10 * time.Second, Transport: rt},
		w: &kafka.Writer{
			Addr: kafka.TCP(o.Kafka.Brokers...), Topic: pc.StateTopic(),
			// The changes of input partition p go to changelog partition p.
			Balancer:     kafka.BalancerFunc(func(m kafka.Message, _ ...int) int { return m.Partition }),
			MaxAttempts:  3,
			BatchSize:    pc.Produce.BatchSize,
			BatchBytes:   pc.Produce.BatchBytes,
			BatchTimeout: pc.Produce.BatchTimeout,
			ReadTimeout:  pc.Produce.WriteTimeout, WriteTimeout: pc.Produce.WriteTimeout,
			RequiredAcks: kafka.RequireAll,
			Compression:  kafka.Zstd,
			Transport:    rt,
		},
		backoff: backoff.Policy{Initial: pc.Produce.RetryBackoff, Max: pc.Produce.RetryMaxBackoff},
		m:       newStateMetrics(),
		log:     o.Logger,
		limiter: lim,
		life:    life,
	}
}

func (s *stateLog) close() error { return s.w.Close() }

// newScope is the empty state of one input partition.
func (s *stateLog) newScope(topic string) *rules.Scope {
	return s.eval.NewScope(rules.ScopeOptions{Topic: topic, MaxBytes: s.rc.MaxBytesPerRule, NewTermHorizon: s.rc.NewTermHorizon})
}

// restoreUntilDone returns the state of input partition id of topic,
// restored from changelog partition id; it retries (with backoff, logged,
// each time from an empty state) while Kafka or the topic is not there,
// until ctx ends.
func (s *stateLog) restoreUntilDone(ctx context.Context, topic string, id int) (*rules.Scope, error) {
	for attempt := 0; ; attempt++ {
		start := time.Now()
		sc := s.newScope(topic)
		n, err := s.restore(ctx, sc, id)
		if err == nil {
			s.m.restoreTime.Observe(time.Since(start).Seconds())
			s.log.Info("rule state restored", "topic", topic, "partition", id, "changelog", s.topic, "entries", n,
				"groups", sc.Groups(), "seconds", time.Since(start).Seconds())
			return sc, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s.m.restoreErrors.Inc()
		s.limiter.Warn(s.log, "state/"+topic, "rule state: cannot restore the partition yet; it is not processed meanwhile",
			"topic", topic, "partition", id, "changelog", s.topic, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(s.backoff.Wait(attempt)):
		}
	}
}

// restore applies changelog partition id, from its first offset to the end
// offset it has now, to sc, and returns the number of entries read. A bad
// entry is counted, logged and skipped: it cannot hold up the partition.
func (s *stateLog) restore(ctx context.Context, sc *rules.Scope, id int) (int, error) {
	first, end, err := s.bounds(ctx, id)
	if err != nil || end <= first {
		return 0, err
	}
	r := newRestoreReader(s.k.Brokers, s.topic, id, s.dialer, s.pc.FetchMaxBytes)
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		return 0, err
	}
	applied, other, stale, bad := 0, 0, 0, 0
	n := 0
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return n, fmt.Errorf("reading %s/%d at offset %d of %d: %w", s.topic, id, first+int64(n), end, err)
		}
		n++
		var value []byte
		if len(m.Value) > 0 {
			value = m.Value
		}
		switch res, err := sc.Restore(m.Key, value); {
		case err != nil:
			bad++
			s.limiter.Warn(s.log, "state/bad", "rule state: changelog entry skipped", "changelog", s.topic, "partition", id, "offset", m.Offset, "err", err)
		case res == rules.OtherTopic:
			other++
		case res == rules.Stale:
			stale++
		default:
			applied++
		}
		if m.Offset+1 >= end {
			break
		}
	}
	s.m.restored.WithLabelValues(restoreApplied).Add(float64(applied))
	s.m.restored.WithLabelValues(restoreOtherTopic).Add(float64(other))
	s.m.restored.WithLabelValues(restoreStale).Add(float64(stale))
	s.m.restored.WithLabelValues(restoreBad).Add(float64(bad))
	return n, nil
}

// newRestoreReader reads a changelog partition: large fetches, a deep
// queue, and no waiting for more once it has some (a restore reads what is
// there, not what comes).
func newRestoreReader(brokers []string, topic string, id int, d *kafka.Dialer, fetchMaxBytes int) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers: brokers, Topic: topic, Partition: id, Dialer: d,
		MinBytes: 1, MaxBytes: max(fetchMaxBytes, 16<<20), MaxWait: 100 * time.Millisecond,
		QueueCapacity: 10000, ReadBackoffMin: 100 * time.Millisecond, ReadBackoffMax: time.Second,
	})
}

// bounds returns the first and end offsets of changelog partition id.
func (s *stateLog) bounds(ctx context.Context, id int) (first, end int64, err error) {
	res, err := s.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		s.topic: {kafka.FirstOffsetOf(id), kafka.LastOffsetOf(id)}}})
	if err != nil {
		return 0, 0, fmt.Errorf("offsets of %s/%d: %w", s.topic, id, err)
	}
	for _, p := range res.Topics[s.topic] {
		if p.Partition != id {
			continue
		}
		if p.Error != nil {
			return 0, 0, fmt.Errorf("offsets of %s/%d (the changelog needs as many partitions as the input topics: kubesift setup kafka): %w", s.topic, id, p.Error)
		}
		return p.FirstOffset, p.LastOffset, nil
	}
	return 0, 0, fmt.Errorf("changelog %s has no partition %d: it needs as many partitions as the input topics (kubesift setup kafka)", s.topic, id)
}

// stateBatch is the changes of one record (pm nil: the stale entries a
// restore found), waiting to be written.
type stateBatch struct {
	pm    *pending
	msgs  []kafka.Message
	ready chan struct{} // closed once every other part of pm is done
}

// stateQueue writes one partition's changes in order (see the top of this
// file). Its channel holds at most one batch per message in the
// partition's window, so queueing never waits long.
type stateQueue struct {
	s    *stateLog
	part int
	ch   chan *stateBatch
	done chan struct{}
	// ctx ends with the processor's lifetime, or when the partition's
	// drain gave up (abandon): what is still queued is then not written.
	ctx    context.Context
	cancel context.CancelFunc
	// broken: a batch was not written; nothing after it is.
	broken bool
}

// startQueue starts the writer of partition part's changes; capacity is
// the most messages the partition has in flight.
func (s *stateLog) startQueue(part, capacity int) *stateQueue {
	q := &stateQueue{s: s, part: part, ch: make(chan *stateBatch, capacity+2), done: make(chan struct{})}
	q.ctx, q.cancel = context.WithCancel(s.life)
	go q.run()
	return q
}

// messages turns changes into changelog messages for partition q.part.
func (q *stateQueue) messages(changes []rules.StateChange) []kafka.Message {
	msgs := make([]kafka.Message, len(changes))
	for i, c := range changes {
		msgs[i] = kafka.Message{Partition: q.part, Key: c.Key, Value: c.Value,
			Headers: []kafka.Header{{Key: headerStateReason, Value: []byte(c.Reason)}}}
	}
	return msgs
}

// headerStateReason names why a changelog message was written.
const headerStateReason = "kubesift-state-reason"

// add queues the changes of pm's record as a part of pm, written once the
// other parts (and the handler's hold) are done; a lost part makes the
// queue drop them, and everything after them.
func (q *stateQueue) add(pm *pending, changes []rules.StateChange) {
	b := &stateBatch{pm: pm, msgs: q.messages(changes), ready: make(chan struct{})}
	if pm == nil {
		close(b.ready)
	} else {
		pm.add()
		pm.gate(func() { close(b.ready) })
	}
	q.ch <- b
}

// stop ends the queue once every batch queued is done; with abandon (the
// partition's drain timed out) what is left is finished unwritten.
func (q *stateQueue) stop(abandon bool) {
	if abandon {
		q.cancel()
	}
	close(q.ch)
	<-q.done
	q.cancel()
}

func (q *stateQueue) run() {
	defer close(q.done)
	var next *stateBatch
	for {
		b := next
		next = nil
		if b == nil {
			var ok bool
			if b, ok = <-q.ch; !ok {
				return
			}
		}
		select {
		case <-b.ready:
		case <-q.ctx.Done():
			q.broken = true
		}
		batch := []*stateBatch{b}
		// Whatever else is queued and ready goes in the same write.
	more:
		for len(batch) < 1000 {
			select {
			case c, ok := <-q.ch:
				if !ok {
					break more
				}
				select {
				case <-c.ready:
					batch = append(batch, c)
				default:
					next = c
					break more
				}
			default:
				break more
			}
		}
		q.write(batch)
	}
}

// write writes batch until Kafka acknowledges it, or the processor gives
// up (its lifetime ended), and finishes each batch's part.
func (q *stateQueue) write(batch []*stateBatch) {
	ok := !q.broken && q.ctx.Err() == nil
	for _, b := range batch {
		if b.pm != nil && b.pm.lost.Load() {
			ok = false // its alerts are not out: neither may its state be
		}
	}
	if ok {
		var msgs []kafka.Message
		for _, b := range batch {
			msgs = append(msgs, b.msgs...)
		}
		ok = q.writeAll(msgs)
	}
	q.broken = q.broken || !ok
	for _, b := range batch {
		if b.pm != nil {
			b.pm.finish(ok)
		}
	}
}

func (q *stateQueue) writeAll(msgs []kafka.Message) bool {
	s := q.s
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(q.ctx, s.pc.Produce.WriteTimeout)
		err := s.w.WriteMessages(ctx, msgs...)
		cancel()
		if err == nil {
			for _, m := range msgs {
				s.m.writes.WithLabelValues(string(m.Headers[0].Value)).Inc()
			}
			return true
		}
		s.m.writeErrors.Inc()
		if q.ctx.Err() != nil {
			return false
		}
		s.limiter.Warn(s.log, "state/write", "rule state: changelog write not acknowledged; retrying", "changelog", s.topic,
			"partition", q.part, "attempt", attempt+1, "err", firstWriteError(err))
		select {
		case <-q.ctx.Done():
			return false
		case <-time.After(s.backoff.Wait(attempt)):
		}
	}
}

// firstWriteError shortens kafka-go's WriteErrors, one error per message
// of the batch, to their count and the first.
func firstWriteError(err error) error {
	var we kafka.WriteErrors
	if !errors.As(err, &we) {
		return err
	}
	for _, e := range we {
		if e != nil {
			return fmt.Errorf("%d of %d messages not written, the first: %w", we.Count(), len(we), e)
		}
	}
	return err
}

var errNoScopedEvaluator = errors.New("pipeline: processor.rule_state.enabled: the rules evaluator keeps no per-partition state (it is not a pipeline.ScopedEvaluator)")
