package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/kafkaopts"
	"github.com/kubesift/kubesift/internal/netorigin"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink"
)

// Evaluator is what the processor needs of the rules engine (rules.Engine):
// the alerts one record raises. The processor calls it from one goroutine
// per partition, in partition order.
type Evaluator interface {
	Eval(r *record.Record) []rules.Alert
}

// Documents builds the store documents of records and alerts (sink/ecs). An
// error means this record (or alert) can never become a document; it names
// the field, and the message goes to the dead-letter topic.
type Documents interface {
	Record(r *record.Record) (sink.Doc, error)
	Alert(a *rules.Alert) (sink.Doc, error)
}

// Options configure a Processor.
type Options struct {
	Kafka     config.KafkaConfig
	Processor config.ProcessorConfig
	Rules     Evaluator
	Documents Documents
	// Origin resolves where each audit record's request came from, once
	// per record, before the rules and the documents read it
	// (record.Record.Origin); nil classifies the addresses without cluster
	// networks, lists or GeoIP.
	Origin *netorigin.Resolver
	// Writer receives every document. The Processor owns it from New on:
	// Run closes it before it returns.
	Writer     sink.Writer
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Dialer and Transport replace the Kafka clients built from Kafka (tests).
	Dialer    *kafka.Dialer
	Transport kafka.RoundTripper
}

// Processor consumes records from Kafka in a consumer group, evaluates the
// rules on them, writes every record and alert to the Writer, produces every
// alert to the alerts topic, and commits per partition the highest offset
// below which every message is done. docs/processor.md describes the loop.
//
// # The acknowledgement contract
//
// A message is done — its offset may be committed — when all of this holds:
//
//   - its record document is done with Indexed or Duplicate, or with
//     Rejected and the message's dead letter is acknowledged by Kafka;
//   - every alert document it raised is done likewise;
//   - every alert it raised is acknowledged by Kafka on the alerts topic;
//   - or, for a message that is not a record (decode) or whose document
//     cannot be built (document), its dead letter is acknowledged.
//
// Anything else — shutdown, a revoked partition whose drain timed out —
// leaves the message undone: it is not committed and Kafka re-delivers it,
// which the stores' create-by-ID and the alerts' deterministic IDs make
// harmless (idempotent at-least-once: exactly-once results).
type Processor struct {
	o       Options
	pc      config.ProcessorConfig
	topics  []string
	log     *slog.Logger
	m       *metrics
	prod    *producer
	dialer  *kafka.Dialer
	limiter obs.LogLimiter

	// life is the context of work that must finish even as a generation
	// ends (dead letters for documents the Writer rejects from its own
	// goroutines); it ends only when Run gives up on shutdown.
	life       context.Context
	lifeCancel context.CancelFunc

	commitMu sync.Mutex // serialises commits on the generation's connection
	ready    atomic.Bool

	// state keeps the rules' windows per partition in the changelog
	// (processor.rule_state); nil when that is off.
	state *stateLog
}

// New checks o and builds a Processor; it connects to nothing yet.
func New(o Options) (*Processor, error) {
	switch {
	case len(o.Kafka.Brokers) == 0:
		return nil, errors.New("pipeline: kafka.brokers: required by process")
	case o.Rules == nil || o.Documents == nil || o.Writer == nil:
		return nil, errors.New("pipeline: Rules, Documents and Writer are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	p := &Processor{o: o, pc: o.Processor, topics: o.Processor.ConsumedTopics(o.Kafka), log: o.Logger, m: newMetrics()}
	p.dialer = o.Dialer
	if p.dialer == nil {
		d, err := kafkaopts.Dialer(o.Kafka)
		if err != nil {
			return nil, fmt.Errorf("pipeline: %w", err)
		}
		p.dialer = d
	}
	rt := o.Transport
	if rt == nil {
		t, err := kafkaopts.Transport(o.Kafka)
		if err != nil {
			return nil, fmt.Errorf("pipeline: %w", err)
		}
		rt = t
	}
	p.life, p.lifeCancel = context.WithCancel(context.Background())
	var more []prometheus.Collector
	if o.Processor.RuleState.Enabled {
		se, ok := o.Rules.(ScopedEvaluator)
		if !ok || se.NewScope(rules.ScopeOptions{}) == nil {
			p.lifeCancel()
			return nil, errNoScopedEvaluator
		}
		p.state = newStateLog(o, se, p.dialer, rt, &p.limiter, p.life)
		more = p.state.m.collectors()
	}
	if err := p.m.register(o.Registerer, more...); err != nil {
		p.lifeCancel()
		return nil, err
	}
	p.m.precreate(p.topics)
	p.prod = newProducer(o.Kafka, o.Processor.Produce, rt, o.Logger, p.m)
	return p, nil
}

// Ready reports nil once the processor has joined its consumer group, for
// /readyz.
func (p *Processor) Ready() error {
	if p.ready.Load() {
		return nil
	}
	return errors.New("not a member of the consumer group yet")
}

// Run consumes until ctx ends, then shuts down: it stops fetching, lets
// in-flight messages finish (up to processor.drain_timeout), commits, leaves
// the group, and closes the Writer and the producer (up to drain_timeout
// more). It returns an error only if the group cannot be set up, or if the
// shutdown left work undone (which Kafka re-delivers).
func (p *Processor) Run(ctx context.Context) error {
	start := kafka.FirstOffset
	if p.pc.StartOffset == config.StartLatest {
		start = kafka.LastOffset
	}
	cg, err := newGroup(p.pc.GroupID, p.topics, p.o.Kafka, p.pc, p.dialer, start, p.log, &p.limiter)
	if err != nil {
		p.closeSinks()
		return fmt.Errorf("pipeline: consumer group: %w", err)
	}
	p.log.Info("processor starting", "group", p.pc.GroupID, "topics", p.topics)
	followGroup(ctx, cg, func(err error) {
		p.ready.Store(false)
		p.limiter.Warn(p.log, "next", "consumer group: cannot join yet; retrying", "err", err)
	}, p.startGeneration)
	p.ready.Store(false)
	p.log.Info("processor stopping: draining in-flight messages and committing")
	// Close ends the current generation — every partition drains and
	// commits (startGeneration) — and then leaves the group, so the
	// partitions move at once instead of after a session timeout.
	cgErr := cg.Close()
	err = p.closeSinks()
	p.log.Info("processor stopped")
	return errors.Join(cgErr, err)
}

// closeSinks closes the Writer (whose last done callbacks may still write
// dead letters) and then the producer.
func (p *Processor) closeSinks() error {
	err := closeSinks(p.pc.DrainTimeout, p.o.Writer, p.prod, p.lifeCancel)
	if p.state != nil {
		err = errors.Join(err, p.state.close())
	}
	return err
}

// partition is one assigned topic-partition in one generation.
type partition struct {
	topic     string
	id        int
	start     int64 // offset the generation resumed from (may be kafka.FirstOffset)
	tracker   *Tracker
	win       *window
	committed int64 // guarded by Processor.commitMu
	label     string
	// scope and states are the partition's rule state and the writer of
	// its changes (processor.rule_state; nil when off).
	scope  *rules.Scope
	states *stateQueue
}

// startGeneration launches one consumer per assigned partition and the
// periodic committer. kafka-go ends the generation on a rebalance (or Close)
// by cancelling the ctx of every function and waits for all of them to
// return before the member rejoins: that wait is where each partition
// drains and commits, so the partition's next owner resumes exactly after
// what was done here.
func (p *Processor) startGeneration(gen *kafka.Generation) {
	var parts []*partition
	for topic, as := range gen.Assignments {
		for _, a := range as {
			parts = append(parts, &partition{
				topic: topic, id: a.ID, start: a.Offset, committed: -1,
				tracker: NewTracker(a.Offset),
				win: newWindow(int64(p.pc.MaxInFlightMessages), p.pc.MaxInFlightBytes, func(d int64) {
					p.m.inFlight.Add(float64(d))
				}),
				label: strconv.Itoa(a.ID),
			})
		}
	}
	p.m.generations.Inc()
	p.m.assigned.Set(float64(len(parts)))
	p.ready.Store(true)
	p.log.Info("consumer group generation joined", "generation", gen.ID, "member", gen.MemberID, "partitions", len(parts))
	for _, part := range parts {
		gen.Start(func(ctx context.Context) { p.consume(ctx, gen, part) })
	}
	gen.Start(func(ctx context.Context) {
		t := time.NewTicker(p.pc.CommitInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = p.commit(gen, parts)
			}
		}
	})
}

// commit commits, for each partition, the offset below which every message
// is done, if it moved. A failed commit is retried at the next interval; if
// the generation is over by then, the next owner re-reads from the last
// committed offset.
func (p *Processor) commit(gen *kafka.Generation, parts []*partition) error {
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	offsets := map[string]map[int]int64{}
	var moved []*partition
	var next []int64
	for _, part := range parts {
		c := part.tracker.Committable()
		// Negative: nothing read yet on a partition new to the group
		// (kafka.FirstOffset/LastOffset); there is nothing to commit.
		if c < 0 || c <= part.committed {
			continue
		}
		if offsets[part.topic] == nil {
			offsets[part.topic] = map[int]int64{}
		}
		offsets[part.topic][part.id] = c
		moved = append(moved, part)
		next = append(next, c)
	}
	if len(moved) == 0 {
		return nil
	}
	start := time.Now()
	err := gen.CommitOffsets(offsets)
	p.m.commitLatency.Observe(time.Since(start).Seconds())
	if err != nil {
		p.m.commitErrors.Inc()
		p.limiter.Warn(p.log, "commit", "offset commit failed; retrying at the next interval", "generation", gen.ID, "err", err)
		return err
	}
	for i, part := range moved {
		part.committed = next[i]
		p.m.committed.WithLabelValues(part.topic, part.label).Set(float64(next[i]))
	}
	return nil
}

// consume reads one partition in order until its generation ends, then
// drains and commits it.
func (p *Processor) consume(ctx context.Context, gen *kafka.Generation, part *partition) {
	r := newPartitionReader(p.o.Kafka, p.pc, p.dialer, part.topic, part.id, p.log, &p.limiter)
	defer func() {
		_ = r.Close()
		p.m.lag.DeleteLabelValues(part.topic, part.label)
		p.m.committed.DeleteLabelValues(part.topic, part.label)
	}()
	if p.state != nil {
		// Before the partition's first record: its windows must be whole
		// when it is evaluated.
		sc, err := p.state.restoreUntilDone(ctx, part.topic, part.id)
		if err != nil {
			return // generation over before the restore ended: nothing read
		}
		part.scope = sc
		part.states = p.state.startQueue(part.id, p.pc.MaxInFlightMessages)
		if stale := part.scope.Drain(); len(stale) > 0 {
			part.states.add(nil, stale)
		}
	}
	if err := r.SetOffset(part.start); err != nil {
		// Only a closed reader refuses; nothing was read, nothing to commit.
		p.log.Error("partition reader: set offset", "topic", part.topic, "partition", part.id, "offset", part.start, "err", err)
		<-ctx.Done()
		return
	}
	// work is the context of the messages this partition has taken on. It
	// ends drain_timeout after the generation, not with it: a message the
	// generation's end catches between its parts (record document added,
	// alert not yet) is finished whole and committed by the drain. Ended
	// with the generation, its next part would fail, the message would stay
	// unacknowledged, and the next owner would write its record a second
	// time (TestGenerationEndMidMessage).
	work, stopWork := afterEnd(ctx, p.pc.DrainTimeout)
	defer stopWork()
	consumed := p.m.consumed.WithLabelValues(part.topic)
	lag := p.m.lag.WithLabelValues(part.topic, part.label)
	for ctx.Err() == nil {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			p.limiter.Warn(p.log, "fetch/"+part.topic, "partition reader: fetch failed; retrying", "topic", part.topic, "partition", part.id, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		if ctx.Err() != nil {
			// Fetched from the reader's buffer as the generation ended:
			// nothing of it was started, so it is left to the next owner
			// rather than lengthen the drain.
			break
		}
		consumed.Inc()
		if m.HighWaterMark > 0 {
			lag.Set(float64(max(m.HighWaterMark-m.Offset-1, 0)))
		}
		p.handle(ctx, work, part, m)
	}
	p.drain(work, gen, part)
}

// afterEnd returns a context that ends grace after ctx ends, or when its
// cancel func is called.
func afterEnd(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancel) })
	return work, func() { stop(); cancel() }
}

// drain waits until the partition's in-flight messages are done, or work
// (which ends processor.drain_timeout after the generation) ends, and
// commits what is done.
func (p *Processor) drain(work context.Context, gen *kafka.Generation, part *partition) {
	drained := part.win.drain(work)
	if !drained {
		n, _ := part.win.inFlight()
		p.m.abandoned.Add(float64(n))
		p.log.Warn("partition revoked with messages still in flight; they will be re-delivered to its next owner",
			"topic", part.topic, "partition", part.id, "in_flight", n, "drain_timeout", p.pc.DrainTimeout)
	}
	if part.states != nil {
		part.states.stop(!drained)
	}
	if err := p.commit(gen, []*partition{part}); err != nil {
		p.log.Warn("final commit of a revoked partition failed; its next owner re-reads from the last commit",
			"topic", part.topic, "partition", part.id, "err", err)
	}
}

// pending is one message on its way through the sinks. parts counts what
// is outstanding (documents, alert messages, dead letters, and the loop's
// own hold while it is still adding parts); the last part to finish
// acknowledges the offset — unless some part was abandoned (ctx ended,
// shutdown), in which case the message stays unacknowledged and is
// re-delivered.
type pending struct {
	part *partition
	// msg is the message itself, kept here (the pending is allocated
	// anyway) so the sinks' callbacks capture only the pending and not a
	// heap copy of the message each.
	msg    kafka.Message
	offset int64
	size   int64
	parts  atomic.Int32
	lost   atomic.Bool
	log    *slog.Logger
	onRest atomic.Pointer[func()] // see gate
}

func (pm *pending) add() { pm.parts.Add(1) }

// gate makes f run once only one part is left: the rule-state part, added
// just before, which waits for the others (stateQueue).
func (pm *pending) gate(f func()) { pm.onRest.Store(&f) }

func (pm *pending) finish(ok bool) {
	if !ok {
		pm.lost.Store(true)
	}
	n := pm.parts.Add(-1)
	if n == 1 {
		if f := pm.onRest.Swap(nil); f != nil {
			(*f)()
		}
	}
	if n != 0 {
		return
	}
	if !pm.lost.Load() {
		if _, err := pm.part.tracker.Ack(pm.offset); err != nil {
			pm.log.Error("offset tracker", "topic", pm.part.topic, "partition", pm.part.id, "err", err)
		}
	}
	pm.part.win.release(pm.size)
}

// handle takes one message through decode, rules, documents and alerts. It
// waits for room in the partition's window first, for as long as ctx (the
// generation) lasts; everything after that runs under work, which outlives
// the generation by the drain timeout, and finishes in callbacks.
func (p *Processor) handle(ctx, work context.Context, part *partition, m kafka.Message) {
	size := int64(len(m.Key) + len(m.Value))
	if err := part.win.acquire(ctx, size); err != nil {
		return // generation over: not added, not acknowledged, re-delivered
	}
	if err := part.tracker.Add(m.Offset); err != nil {
		part.win.release(size)
		p.log.Error("offset tracker", "topic", part.topic, "partition", part.id, "err", err)
		return
	}
	pm := &pending{part: part, msg: m, offset: m.Offset, size: size, log: p.log}
	pm.parts.Store(1) // the loop's hold, released at the end
	defer pm.finish(true)

	rec, err := record.Unmarshal(m.Value)
	if err != nil {
		p.deadLetter(work, pm, deadLetter{orig: m, kind: kindRecord, value: m.Value,
			stage: StageDecode, reason: StageDecode, err: err.Error()})
		return
	}
	if rec.Audit != nil {
		rec.Origin = p.o.Origin.LookupSources(rec.Audit.SourceIPs)
	}
	alerts, changes := p.eval(part, rec, m.Offset)
	if len(changes) > 0 {
		// A part of the message from here: the queue writes the changes
		// only once every other part is done, and not at all when one was
		// lost (an early return below), so they never get ahead of the
		// alerts.
		part.states.add(pm, changes)
	}
	if doc, err := p.o.Documents.Record(rec); err != nil {
		if !p.deadLetter(work, pm, deadLetter{orig: m, kind: kindRecord, value: m.Value,
			stage: StageDocument, reason: StageDocument, err: fmt.Sprintf("record %s: %v", rec.ID, err)}) {
			return
		}
	} else if !p.index(work, pm, kindRecord, doc, m.Value) {
		return
	}
	for i := range alerts {
		a := &alerts[i]
		p.m.alerts.Inc()
		value, err := json.Marshal(a)
		if err != nil {
			// A rules.Alert is plain data; this would be a bug. The record
			// is still committed behind a dead letter naming it.
			p.deadLetter(work, pm, deadLetter{orig: m, kind: kindRecord, value: m.Value,
				stage: StageDocument, reason: StageDocument, err: fmt.Sprintf("alert %s: %v", a.ID, err)})
			continue
		}
		if doc, err := p.o.Documents.Alert(a); err != nil {
			if !p.deadLetter(work, pm, deadLetter{orig: m, kind: kindAlert, value: value,
				stage: StageDocument, reason: StageDocument, err: fmt.Sprintf("alert %s: %v", a.ID, err)}) {
				return
			}
		} else if !p.index(work, pm, kindAlert, doc, value) {
			return
		}
		if !p.produceAlert(work, pm, a, value) {
			return
		}
	}
}

// eval runs the rules on rec, in the partition's rule state when that is
// kept (and returns its changes).
func (p *Processor) eval(part *partition, rec *record.Record, offset int64) ([]rules.Alert, []rules.StateChange) {
	if part.scope == nil {
		return p.o.Rules.Eval(rec), nil
	}
	alerts := p.state.eval.EvalIn(rec, part.scope, offset)
	return alerts, part.scope.Drain()
}

// index hands doc to the Writer. A Rejected document becomes a dead letter
// (of dlValue: the original message for records, the alert for alerts)
// before its part is finished.
func (p *Processor) index(ctx context.Context, pm *pending, kind string, doc sink.Doc, dlValue []byte) bool {
	pm.add()
	// The callback captures the ID rather than the whole Doc, and the
	// message through pm: one small closure per document.
	id := doc.ID
	err := p.o.Writer.Add(ctx, doc, func(res sink.Result) {
		switch res.Status {
		case sink.Indexed:
			p.m.indexedKind(kind).Inc()
			pm.finish(true)
		case sink.Duplicate:
			p.m.duplicateKind(kind).Inc()
			pm.finish(true)
		case sink.Rejected:
			rt := reasonType(res.Reason)
			p.m.rejected.WithLabelValues(rt).Inc()
			// The Writer calls done from its own goroutines, possibly after
			// the generation ended: the dead letter uses the processor's
			// lifetime, and it is added before the index part finishes, so
			// the offset cannot be acknowledged ahead of it.
			p.deadLetter(p.life, pm, deadLetter{orig: pm.msg, kind: kind, value: dlValue,
				stage: StageIndex, reason: rt, err: fmt.Sprintf("%s %s: %s", kind, id, res.Reason)})
			pm.finish(true)
		default:
			p.log.Error("writer reported an unknown status; the message stays uncommitted", "status", int(res.Status), "id", id)
			pm.finish(false)
		}
	})
	if err != nil {
		pm.finish(false)
		return false
	}
	return true
}

// deadLetter writes dl to the dead-letter topic; its part finishes when
// Kafka acknowledged it.
func (p *Processor) deadLetter(ctx context.Context, pm *pending, dl deadLetter) bool {
	pm.add()
	msg := dl.message(p.o.Kafka.Topics.DLQ, p.pc.Produce.BatchBytes)
	err := p.prod.Produce(ctx, kindDLQ, msg, func(err error) {
		if err == nil {
			p.m.deadLetters.WithLabelValues(dl.stage).Inc()
		}
		pm.finish(err == nil)
	})
	if err != nil {
		pm.finish(false)
		return false
	}
	p.limiter.Warn(p.log, "dlq/"+dl.stage, "message sent to the dead-letter topic",
		"stage", dl.stage, "reason", dl.reason, "topic", dl.orig.Topic, "partition", dl.orig.Partition,
		"offset", dl.orig.Offset, "err", dl.err)
	return true
}

// produceAlert writes a to the alerts topic (alertMessage).
func (p *Processor) produceAlert(ctx context.Context, pm *pending, a *rules.Alert, value []byte) bool {
	pm.add()
	msg := alertMessage(p.o.Kafka.Topics.Alerts, a, value)
	err := p.prod.Produce(ctx, kindAlert, msg, func(err error) { pm.finish(err == nil) })
	if err != nil {
		pm.finish(false)
		return false
	}
	return true
}
