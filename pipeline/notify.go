package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/kafkaopts"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/sink/notify"
)

// NotifyConsumerOptions configure a NotifyConsumer.
type NotifyConsumerOptions struct {
	Brokers []string
	Dialer  *kafka.Dialer
	// Topic is the alerts topic, GroupID the notifiers' consumer group.
	Topic, GroupID string
	// DLQ receives undecodable messages (with their reason) before their
	// offset is acknowledged; it must be durable when it returns nil.
	DLQ            func(ctx context.Context, m kafka.Message, reason string, err error) error
	Dispatcher     *notify.Dispatcher
	CommitInterval time.Duration
	// MaxInFlight caps, per partition, the alerts read and not yet final;
	// reading waits while it is reached (groups flush on their timers, so
	// the wait ends).
	MaxInFlight int
	Log         *slog.Logger
	Registerer  prometheus.Registerer
}

// Outcomes of kubesift_notify_consumed_total.
const (
	consumedOK         = "ok"
	consumedDeadLetter = "dead_letter"
)

// NotifyConsumer is the notifier's Kafka loop: it reads the alerts topic in a
// kafka-go consumer group and hands each alert to a notify.Dispatcher. It
// lives here, not in sink/notify, because it tracks and commits offsets
// with Tracker, and sinks do not import pipeline. An offset is committed
// only when the alert is final (delivered, failed for good, muted, or a
// duplicate) — per partition, the highest contiguous one (Tracker) — so the
// committed offsets are the durable notification log: a notifier that dies
// re-reads exactly the alerts not yet delivered.
//
// On a rebalance the generation commits what is final and hands the
// partition over; alerts of it still waiting in groups here are delivered
// by this notifier and, after being re-read, by the new owner too (at least
// once; a receiver that dedups by idempotency key sees one if both flush
// the same set).
type NotifyConsumer struct {
	o        NotifyConsumerOptions
	log      *slog.Logger
	consumed *prometheus.CounterVec // by outcome: ok, dead_letter
	commits  prometheus.Counter
}

// NewNotifyConsumer checks o.
func NewNotifyConsumer(o NotifyConsumerOptions) (*NotifyConsumer, error) {
	if len(o.Brokers) == 0 || o.Topic == "" || o.GroupID == "" || o.Dispatcher == nil || o.DLQ == nil {
		return nil, errors.New("notify consumer: brokers, topic, group, dispatcher and DLQ are required")
	}
	if o.CommitInterval <= 0 {
		o.CommitInterval = time.Second
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 100000
	}
	c := &NotifyConsumer{o: o, log: o.Log,
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_notify_consumed_total", Help: "Alert messages read from the alerts topic, by outcome (ok, dead_letter).",
		}, []string{"outcome"}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubesift_notify_commit_errors_total", Help: "Failed offset commits of the notifier (retried).",
		}),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if err := obs.Register(o.Registerer, c.consumed, c.commits); err != nil {
		return nil, fmt.Errorf("notify consumer metrics: %w", err)
	}
	for _, outcome := range []string{consumedOK, consumedDeadLetter} {
		c.consumed.WithLabelValues(outcome)
	}
	return c, nil
}

// Run consumes until ctx ends; it then commits what is final and leaves the
// group.
func (c *NotifyConsumer) Run(ctx context.Context) error {
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: c.o.GroupID, Brokers: c.o.Brokers, Dialer: c.o.Dialer, Topics: []string{c.o.Topic},
		StartOffset: kafka.FirstOffset, JoinGroupBackoff: time.Second, Timeout: 10 * time.Second,
		WatchPartitionChanges: true, PartitionWatchInterval: 10 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("notify: consumer group: %w", err)
	}
	for {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				break
			}
			c.log.Warn("notify: consumer group: cannot join yet; retrying", "err", err)
			continue
		}
		c.startGeneration(gen)
	}
	return cg.Close()
}

type notifyPartition struct {
	id      int
	start   int64
	tracker *Tracker
	sem     chan struct{}
	// committed is only touched by the generation's one committer.
	committed int64
}

func (c *NotifyConsumer) startGeneration(gen *kafka.Generation) {
	var parts []*notifyPartition
	for _, a := range gen.Assignments[c.o.Topic] {
		parts = append(parts, &notifyPartition{id: a.ID, start: a.Offset, tracker: NewTracker(a.Offset),
			sem: make(chan struct{}, c.o.MaxInFlight), committed: -1})
	}
	c.log.Info("notify: consumer group generation joined", "generation", gen.ID, "partitions", len(parts))
	for _, p := range parts {
		gen.Start(func(ctx context.Context) { c.consume(ctx, p) })
	}
	gen.Start(func(ctx context.Context) {
		t := time.NewTicker(c.o.CommitInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				// The generation ends: commit what is final, so the next
				// owner resumes right after it.
				c.commit(gen, parts)
				return
			case <-t.C:
				c.commit(gen, parts)
			}
		}
	})
}

func (c *NotifyConsumer) commit(gen *kafka.Generation, parts []*notifyPartition) {
	offsets := map[int]int64{}
	for _, p := range parts {
		if off := p.tracker.Committable(); off >= 0 && off > p.committed {
			offsets[p.id] = off
		}
	}
	if len(offsets) == 0 {
		return
	}
	if err := gen.CommitOffsets(map[string]map[int]int64{c.o.Topic: offsets}); err != nil {
		c.commits.Inc()
		c.log.Warn("notify: offset commit failed; retrying at the next interval", "err", err)
		return
	}
	for _, p := range parts {
		if off, ok := offsets[p.id]; ok {
			p.committed = off
		}
	}
}

// consume reads one partition in order until the generation ends.
func (c *NotifyConsumer) consume(ctx context.Context, p *notifyPartition) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: c.o.Brokers, Topic: c.o.Topic, Partition: p.id, Dialer: c.o.Dialer,
		MinBytes: 1, MaxBytes: 10 << 20, MaxWait: kafkaopts.ReaderMaxWait(250 * time.Millisecond),
		ReadBackoffMin: 100 * time.Millisecond, ReadBackoffMax: time.Second,
	})
	defer r.Close()
	if err := r.SetOffset(p.start); err != nil {
		c.log.Error("notify: partition reader: set offset", "partition", p.id, "err", err)
		<-ctx.Done()
		return
	}
	ack := func(off int64) {
		if _, err := p.tracker.Ack(off); err != nil {
			c.log.Error("notify: offset tracking", "partition", p.id, "err", err)
		}
		<-p.sem
	}
	for {
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		m, err := r.FetchMessage(ctx)
		if err != nil {
			<-p.sem
			if ctx.Err() != nil {
				return
			}
			c.log.Warn("notify: partition reader", "partition", p.id, "err", err)
			continue
		}
		if err := p.tracker.Add(m.Offset); err != nil {
			<-p.sem
			c.log.Error("notify: offset tracking", "partition", p.id, "err", err)
			continue
		}
		off := m.Offset
		a, err := notify.DecodeAlertMessage(m)
		if err != nil {
			// Bad input: dead-lettered with its reason, counted, logged,
			// and then acknowledged — it never blocks the partition.
			c.consumed.WithLabelValues(consumedDeadLetter).Inc()
			c.log.Warn("notify: undecodable alert message; dead-lettered", "partition", p.id, "offset", off, "err", err)
			if derr := c.o.DLQ(ctx, m, "decode", err); derr != nil {
				// Not durable anywhere: leave it unacknowledged, so it is
				// read again after a restart.
				c.log.Error("notify: dead letter not written; offset held", "partition", p.id, "offset", off, "err", derr)
				continue
			}
			ack(off)
			continue
		}
		c.consumed.WithLabelValues(consumedOK).Inc()
		if err := c.o.Dispatcher.Add(ctx, a, func() { ack(off) }); err != nil {
			return // ctx ended
		}
	}
}

// NotifyDLQWriter returns a DLQ function writing to topic with the
// kubesift-dlq-* headers of the processor's dead letters (source
// "notifier", stage "decode"), the original key, headers and value kept.
func NotifyDLQWriter(w *kafka.Writer, topic string) func(ctx context.Context, m kafka.Message, reason string, err error) error {
	return func(ctx context.Context, m kafka.Message, reason string, err error) error {
		msg := err.Error()
		if len(msg) > 4096 {
			msg = msg[:4096]
		}
		headers := append([]kafka.Header(nil), m.Headers...)
		headers = append(headers,
			kafka.Header{Key: HeaderDLQSource, Value: []byte("notifier")},
			kafka.Header{Key: HeaderDLQStage, Value: []byte(reason)},
			kafka.Header{Key: HeaderDLQReason, Value: []byte("undecodable_alert")},
			kafka.Header{Key: HeaderDLQError, Value: []byte(msg)},
			kafka.Header{Key: HeaderDLQOrigin, Value: []byte(m.Topic)},
			kafka.Header{Key: HeaderDLQPartition, Value: []byte(strconv.Itoa(m.Partition))},
			kafka.Header{Key: HeaderDLQOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
			kafka.Header{Key: HeaderDLQKind, Value: []byte("alert")},
		)
		return w.WriteMessages(ctx, kafka.Message{Topic: topic, Key: m.Key, Value: m.Value, Headers: headers})
	}
}
