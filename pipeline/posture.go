package pipeline

import (
	"cmp"
	"context"
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
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
)

// FindingsSink is what the posture consumer needs of the findings writer
// (sink/elasticsearch.FindingsWriter): the findings ack contract there
// says when done is called.
type FindingsSink interface {
	Write(ctx context.Context, fs []ecs.Finding, done func(f *ecs.Finding, r sink.Result)) error
	WriteScores(ctx context.Context, cluster string, total posture.Score, byNamespace map[string]posture.Score, at time.Time, done func(sink.Result)) error
}

// StateReader returns the last state written of every finding of a cluster
// (sink/elasticsearch.FindingStates on the findings index).
type StateReader func(ctx context.Context, cluster string) ([]posture.Decision, error)

// PostureOptions configure a PostureConsumer.
type PostureOptions struct {
	Kafka     config.KafkaConfig
	Processor config.ProcessorConfig // timeouts, windows, produce; Posture for the rest
	Engine    *posture.Engine
	Findings  FindingsSink
	States    StateReader
	// Actors finds who made a change that opened findings; nil, or
	// Processor.Posture.ActorWait 0, leaves findings without actor.
	Actors ActorFinder
	// maxLookups replaces maxActorLookups when positive (tests).
	maxLookups int
	// Documents builds the alert documents written beside the alerts
	// topic, as the record processor does.
	Documents interface {
		Alert(a *rules.Alert) (sink.Doc, error)
	}
	// Writer is the store the findings and alert documents go through.
	// The consumer owns it from NewPosture on: Run closes it.
	Writer     sink.Writer
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Usage is the RBAC usage store (posture_usage.go); nil when
	// processor.posture.rbac_usage is off or the store has no audit search.
	Usage UsageStore
	// Dialer and Transport replace the Kafka clients built from Kafka (tests).
	Dialer    *kafka.Dialer
	Transport kafka.RoundTripper
}

// PostureConsumer keeps the posture of the clusters on its partitions of
// the objects topic: it rebuilds each partition's clusters when it is
// assigned, then applies every change, writes the finding transitions and
// scores, and raises alerts. docs/processor.md ("The posture consumer")
// describes the loop.
//
// # Rebuild, then live
//
// The objects topic is partitioned by cluster (collector/publish), so a
// partition holds whole clusters and its owner sees their whole inventory.
// On assignment the consumer reads the partition from its first offset to
// the high watermark it had then, keeping the last message of every key
// (a tombstone removes the key), seeds the engine with each cluster's
// states from the findings index (Restore) and Replaces each cluster's
// inventory. Findings that did not change while no process watched stay
// silent; the rebuild's transitions are written, and their alerts
// acknowledged, before the first live change is applied. From the high
// watermark on, every message is applied (Apply or Delete) in partition
// order. On revocation the partition's clusters are forgotten.
//
// # The acknowledgement contract
//
// A live message is done when every transition it caused is done by the
// findings writer (Indexed, Duplicate, or Rejected and dead-lettered) and
// every alert it raised is acknowledged by Kafka and its document done; a
// message that is not an object record, or an object the engine rejects,
// is done when its dead letter is acknowledged. Transitions that open or
// reopen findings are handed on only once the change's actor lookup ended
// (posture_actor.go), so such a message is done after that too. A transition that raises
// an alert is written to the findings index only after Kafka acknowledged
// the alert: the state index is what a restarted consumer restores from,
// so a state written before its alert could hide an alert that was lost.
// Offsets are committed behind what is done, as the record processor
// does; a rebuild always starts at the first offset, so the committed
// offset marks live progress (lag) rather than a resume point.
type PostureConsumer struct {
	o      PostureOptions
	pc     config.ProcessorConfig
	topic  string
	minSev rules.Severity
	log    *slog.Logger
	m      *postureMetrics
	um     *usageMetrics
	prod   *producer
	dialer *kafka.Dialer
	lim    obs.LogLimiter

	life       context.Context
	lifeCancel context.CancelFunc
	commitMu   sync.Mutex
	committed  map[int]int64 // partition -> last offset committed in this generation; guarded by commitMu
	ready      atomic.Bool
	actorSlots chan struct{} // one per actor lookup waiting (maxActorLookups)
	// rebuilding counts the partitions of the current generation whose
	// rebuild has not finished: until it has, the findings of their
	// clusters are not those of the current state, so the consumer is not
	// ready.
	rebuilding atomic.Int64
	// checksGen counts ReloadChecks calls; a partition whose clusters were
	// scored under an older count scores all of them at its next tick.
	checksGen atomic.Int64
}

// NewPosture checks o and builds a PostureConsumer; it connects to nothing
// yet.
func NewPosture(o PostureOptions) (*PostureConsumer, error) {
	switch {
	case len(o.Kafka.Brokers) == 0:
		return nil, errors.New("pipeline: kafka.brokers: required by the posture consumer")
	case o.Kafka.Topics.Objects == "":
		return nil, errors.New("pipeline: kafka.topics.objects: required by the posture consumer")
	case o.Engine == nil || o.Findings == nil || o.States == nil || o.Documents == nil || o.Writer == nil:
		return nil, errors.New("pipeline: posture: Engine, Findings, States, Documents and Writer are required")
	}
	sev, err := rules.ParseSeverity(o.Processor.Posture.AlertSeverity)
	if err != nil {
		return nil, fmt.Errorf("pipeline: processor.posture.alert_severity: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	c := &PostureConsumer{o: o, pc: o.Processor, topic: o.Kafka.Topics.Objects, minSev: sev,
		log: o.Logger.With("component", "posture"), m: newPostureMetrics(), actorSlots: make(chan struct{}, cmp.Or(o.maxLookups, maxActorLookups))}
	c.dialer = o.Dialer
	if c.dialer == nil {
		if c.dialer, err = kafkaopts.Dialer(o.Kafka); err != nil {
			return nil, fmt.Errorf("pipeline: %w", err)
		}
	}
	rt := o.Transport
	if rt == nil {
		if rt, err = kafkaopts.Transport(o.Kafka); err != nil {
			return nil, fmt.Errorf("pipeline: %w", err)
		}
	}
	// All or none: a refused registration (a second posture consumer on
	// one registry) leaves no series of this one behind.
	cs := append(c.m.collectors(), o.Engine.Collector())
	if o.Usage != nil {
		c.um = newUsageMetrics()
		cs = append(cs, c.um.collectors()...)
	}
	if err := obs.Register(o.Registerer, cs...); err != nil {
		return nil, fmt.Errorf("posture metrics (one posture consumer per registry): %w", err)
	}
	if o.Usage != nil {
		o.Engine.SetUsageWindow(o.Processor.Posture.RBACUsage.Window)
	}
	// The producer's own counters (alerts produced, retries) are the
	// record processor's series; the posture consumer counts its alerts
	// in kubesift_posture_alerts_total instead, so this set stays
	// unregistered.
	c.prod = newProducer(o.Kafka, o.Processor.Produce, rt, c.log, newMetrics())
	c.life, c.lifeCancel = context.WithCancel(context.Background())
	return c, nil
}

// Ready reports nil once the consumer is a member of its group and has
// rebuilt every partition of the current generation. A rebalance makes it
// not ready again until the new assignment is rebuilt; a partition whose
// rebuild failed keeps it not ready until the next rebalance (the
// partition stays idle until then).
func (c *PostureConsumer) Ready() error {
	if !c.ready.Load() {
		return errors.New("posture consumer: not a member of the consumer group yet")
	}
	if n := c.rebuilding.Load(); n > 0 {
		return fmt.Errorf("posture consumer: %d assigned partition(s) not rebuilt yet", n)
	}
	return nil
}

// Run consumes until ctx ends, then drains (processor.drain_timeout),
// commits, leaves the group and closes the writer and the producer.
func (c *PostureConsumer) Run(ctx context.Context) error {
	cg, err := newGroup(c.pc.Posture.GroupID, []string{c.topic}, c.o.Kafka, c.pc, c.dialer, kafka.FirstOffset, c.log, &c.lim)
	if err != nil {
		c.closeSinks()
		return fmt.Errorf("pipeline: posture consumer group: %w", err)
	}
	c.log.Info("posture consumer starting", "group", c.pc.Posture.GroupID, "topic", c.topic)
	followGroup(ctx, cg, func(err error) {
		c.ready.Store(false)
		c.lim.Warn(c.log, "next", "consumer group: cannot join yet; retrying", "err", err)
	}, c.startGeneration)
	c.ready.Store(false)
	cgErr := cg.Close()
	err = c.closeSinks()
	c.log.Info("posture consumer stopped")
	return errors.Join(cgErr, err)
}

// closeSinks closes the writer (a no-op for the processor's, which is
// borrowed) and the producer.
func (c *PostureConsumer) closeSinks() error {
	return closeSinks(c.pc.DrainTimeout, c.o.Writer, c.prod, c.lifeCancel)
}

// startGeneration starts one loop per assigned partition and the
// committer; kafka-go waits for all of them before the member rejoins.
func (c *PostureConsumer) startGeneration(gen *kafka.Generation) {
	var parts []*partition
	for _, as := range gen.Assignments {
		for _, a := range as {
			parts = append(parts, &partition{topic: c.topic, id: a.ID, committed: -1, label: strconv.Itoa(a.ID),
				win: newWindow(int64(c.pc.MaxInFlightMessages), c.pc.MaxInFlightBytes, func(int64) {})})
		}
	}
	c.commitMu.Lock()
	c.committed = map[int]int64{}
	c.commitMu.Unlock()
	c.m.assigned.Set(float64(len(parts)))
	c.rebuilding.Store(int64(len(parts)))
	c.ready.Store(true)
	c.log.Info("posture generation joined", "generation", gen.ID, "partitions", len(parts))
	ready := make([]atomic.Pointer[Tracker], len(parts))
	for i, part := range parts {
		gen.Start(func(ctx context.Context) {
			c.consume(ctx, gen, part, func(t *Tracker) { ready[i].Store(t) })
		})
	}
	gen.Start(func(ctx context.Context) {
		t := time.NewTicker(c.pc.CommitInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				var live []*partition
				for i, part := range parts {
					if tr := ready[i].Load(); tr != nil {
						live = append(live, &partition{topic: part.topic, id: part.id, label: part.label, tracker: tr})
					}
				}
				c.commitLive(gen, live)
			}
		}
	})
}

// commitLive commits the committable offset of each partition in live
// mode. Errors are retried at the next interval.
func (c *PostureConsumer) commitLive(gen *kafka.Generation, parts []*partition) {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	offsets := map[int]int64{}
	for _, part := range parts {
		if off := part.tracker.Committable(); off > 0 && off != c.committed[part.id] {
			offsets[part.id] = off
		}
	}
	if len(offsets) == 0 {
		return
	}
	if err := gen.CommitOffsets(map[string]map[int]int64{c.topic: offsets}); err != nil {
		c.m.commitErrors.Inc()
		c.lim.Warn(c.log, "commit", "offset commit failed; retrying at the next interval", "err", err)
		return
	}
	for id, off := range offsets {
		c.committed[id] = off
		c.m.committed.WithLabelValues(strconv.Itoa(id)).Set(float64(off))
	}
}

// consume rebuilds the partition's clusters, then applies its live
// changes until the generation ends, then drains, commits and forgets the
// clusters. live is told the partition's Tracker once the rebuild is done.
func (c *PostureConsumer) consume(ctx context.Context, gen *kafka.Generation, part *partition, live func(*Tracker)) {
	r := newPartitionReader(c.o.Kafka, c.pc, c.dialer, c.topic, part.id, c.log, &c.lim)
	ps := &partState{clusters: map[string]bool{}, dirty: map[string]bool{}, usage: map[string]*usageState{}, checksGen: c.checksGen.Load()}
	defer func() {
		_ = r.Close()
		for cl := range ps.clusters {
			c.o.Engine.Forget(cl)
			c.m.score.DeletePartialMatch(prometheus.Labels{"cluster": cl})
			if c.um != nil {
				c.um.tuples.DeleteLabelValues(cl)
			}
		}
		c.m.lag.DeleteLabelValues(part.label)
		c.m.committed.DeleteLabelValues(part.label)
	}()
	end, err := c.rebuild(ctx, r, part, ps)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Error("posture rebuild failed; the partition stays idle until the next rebalance", "partition", part.id, "err", err)
		}
		<-ctx.Done()
		return
	}
	part.tracker = NewTracker(end)
	c.commitLive(gen, []*partition{part})
	live(part.tracker)
	c.rebuilding.Add(-1)
	work, stopWork := afterEnd(ctx, c.pc.DrainTimeout)
	defer stopWork()
	scores := time.NewTicker(c.pc.Posture.ScoreInterval)
	defer scores.Stop()
	var usageTick <-chan time.Time // nil (never) without a usage store
	if c.o.Usage != nil {
		t := time.NewTicker(c.pc.Posture.RBACUsage.Interval)
		defer t.Stop()
		usageTick = t.C
	}
	msgs := make(chan kafka.Message)
	fetched := make(chan struct{})
	go func() { defer close(fetched); c.fetch(ctx, r, part, msgs) }()
	for {
		select {
		case <-ctx.Done():
			<-fetched
			c.drain(work, gen, part)
			return
		case <-scores.C:
			gen := c.checksGen.Load()
			c.writeScores(work, ps, gen != ps.checksGen)
			ps.checksGen = gen
		case <-usageTick:
			c.readUsage(work, part, ps)
		case m := <-msgs:
			c.handleLive(ctx, work, part, ps, m)
		}
	}
}

// fetch hands the partition's messages to the loop until ctx ends, so the
// loop can also tick the scores while the partition is idle.
func (c *PostureConsumer) fetch(ctx context.Context, r *kafka.Reader, part *partition, out chan<- kafka.Message) {
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.lim.Warn(c.log, "fetch", "partition reader: fetch failed; retrying", "partition", part.id, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		if m.HighWaterMark > 0 {
			c.m.lag.WithLabelValues(part.label).Set(float64(max(m.HighWaterMark-m.Offset-1, 0)))
		}
		select {
		case out <- m:
		case <-ctx.Done():
			return
		}
	}
}

// drain waits for the partition's in-flight messages (up to the drain
// timeout) and commits what is done.
func (c *PostureConsumer) drain(work context.Context, gen *kafka.Generation, part *partition) {
	if !part.win.drain(work) {
		n, _ := part.win.inFlight()
		c.m.abandoned.Add(float64(n))
		c.log.Warn("partition revoked with messages in flight; the next owner rebuilds them", "partition", part.id, "in_flight", n)
	}
	c.commitLive(gen, []*partition{part})
}

// partState is what one partition's loop knows of its clusters.
type partState struct {
	clusters map[string]bool // clusters seen (restored and rebuilt)
	dirty    map[string]bool // clusters changed since their last score
	usage    map[string]*usageState
	// checksGen is the consumer's checksGen when the clusters were last
	// scored; a reload of the checks changes every verdict's weight.
	checksGen int64
}
