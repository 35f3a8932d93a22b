package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/kafkaopts"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/sink/report"
)

// DefaultDeadLetterCountBytes is a DeadLetterCounter's byte budget when
// it names none: a day of dead letters of a healthy fleet is far below
// it, and a flood (a broken collector dead-letters everything) is
// reported as partial rather than read whole every day.
const DefaultDeadLetterCountBytes = 256 << 20

// deadLetterCountTimeout bounds a Count whose context has no deadline: a
// broker that stops answering mid-read must not hold the digest forever.
const deadLetterCountTimeout = 5 * time.Minute

// DeadLetterCounter counts the dead letters of a window per cluster, for
// the digest: what never reached Elasticsearch is only in the dead-letter
// topic. Each partition is read from the first offset whose time is at or
// after the window's start to the first at or after its end (Kafka's
// lookup of offsets by time, over the producers' timestamps), and of those
// messages the ones whose own time is within the window count.
type DeadLetterCounter struct {
	Dialer  *kafka.Dialer
	Brokers []string
	Topic   string
	// MaxBytes bounds the message bytes one Count reads (a dead letter's
	// value comes with its headers); 0 is DefaultDeadLetterCountBytes.
	MaxBytes int64
}

// NewDeadLetterCounter counts the dead letters of k's dead-letter topic,
// with k's brokers, TLS and SASL.
func NewDeadLetterCounter(k config.KafkaConfig) (*DeadLetterCounter, error) {
	d, err := kafkaopts.Dialer(k)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return &DeadLetterCounter{Dialer: d, Brokers: k.Brokers, Topic: k.Topics.DLQ}, nil
}

// AddTo counts the dead letters of w and sets each digest's, every one of
// ds being of window w.
func (c *DeadLetterCounter) AddTo(ctx context.Context, ds []*report.Digest, w report.Window) error {
	t, err := c.Count(ctx, w)
	if err != nil {
		return err
	}
	for _, d := range ds {
		d.DeadLetters = t.Of(d.Cluster)
	}
	return nil
}

// Count reads the window's dead letters. A topic that does not exist yet
// has none. ctx bounds the reading (deadLetterCountTimeout without a
// deadline).
func (c *DeadLetterCounter) Count(ctx context.Context, w report.Window) (*report.DeadLetterTally, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, deadLetterCountTimeout)
		defer cancel()
	}
	t := &report.DeadLetterTally{}
	parts, broker, err := c.partitions(ctx)
	if errors.Is(err, kafka.UnknownTopicOrPartition) {
		return t, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dead letters: topic %s: %w", c.Topic, err)
	}
	budget := c.MaxBytes
	if budget <= 0 {
		budget = DefaultDeadLetterCountBytes
	}
	for _, p := range parts {
		more, err := c.countPartition(ctx, broker, p.ID, w, t, &budget)
		if err != nil {
			return nil, fmt.Errorf("dead letters: topic %s partition %d: %w", c.Topic, p.ID, err)
		}
		if !more {
			t.SetPartial()
			break
		}
	}
	return t, nil
}

// partitions looks the topic's partitions up at the first broker that
// answers, and returns that broker.
func (c *DeadLetterCounter) partitions(ctx context.Context) ([]kafka.Partition, string, error) {
	var errs []error
	for _, b := range c.Brokers {
		parts, err := c.Dialer.LookupPartitions(ctx, "tcp", b, c.Topic)
		if err == nil || errors.Is(err, kafka.UnknownTopicOrPartition) {
			return parts, b, err
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, "", errors.New("no broker")
	}
	return nil, "", errors.Join(errs...)
}

// countPartition tallies one partition's dead letters of w; more is false
// once the byte budget is spent.
func (c *DeadLetterCounter) countPartition(ctx context.Context, broker string, part int, w report.Window, t *report.DeadLetterTally, budget *int64) (more bool, err error) {
	conn, err := c.Dialer.DialLeader(ctx, "tcp", broker, c.Topic, part)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return false, err
		}
	}
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return false, err
	}
	from, err := offsetAt(conn, w.From, first, last)
	if err != nil {
		return false, err
	}
	to, err := offsetAt(conn, w.To, last, last)
	if err != nil {
		return false, err
	}
	if to <= from {
		return true, nil
	}
	if _, err := conn.Seek(from, kafka.SeekAbsolute); err != nil {
		return false, err
	}
	more = true
	err = readRange(conn, from, to, func(m kafka.Message) (bool, error) {
		if *budget -= messageSize(m); *budget < 0 {
			more = false
			return false, nil
		}
		if w.Contains(m.Time) {
			t.Add(header(m, record.HeaderCluster), header(m, HeaderDLQSource), header(m, HeaderDLQReason), header(m, HeaderDLQKind) == kindAlert)
		}
		return true, nil
	})
	return more, err
}

// offsetAt is the first offset whose time is at or after at, or zero
// when at is unset; Kafka answers -1 when no message is that late, which
// is end.
func offsetAt(conn *kafka.Conn, at time.Time, zero, end int64) (int64, error) {
	if at.IsZero() {
		return zero, nil
	}
	off, err := conn.ReadOffset(at)
	if err != nil {
		return 0, err
	}
	if off < 0 {
		return end, nil
	}
	return off, nil
}

// header is the value of m's header key ("" without one).
func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
