package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/kafkaopts"
)

// GroupTopics is a consumer group and the topics it reads.
type GroupTopics struct {
	ID     string
	Topics []string
}

// ConsumerGroups are the consumer groups a command runs: the processor's
// (and the posture consumer's, when processor.posture.enabled) and the
// notifier's, as asked. When all of them have committed the end of what
// they read, every record published is indexed and every alert notified
// (WaitDrained); LagMonitor watches them.
func ConsumerGroups(cfg *config.Config, processor, notifier bool) []GroupTopics {
	var gs []GroupTopics
	if processor {
		gs = append(gs, GroupTopics{cfg.Processor.GroupID, cfg.Processor.ConsumedTopics(cfg.Kafka)})
		if cfg.Processor.Posture.Enabled {
			gs = append(gs, GroupTopics{cfg.Processor.Posture.GroupID, []string{cfg.Kafka.Topics.Objects}})
		}
	}
	if notifier {
		gs = append(gs, GroupTopics{cfg.Notify.ConsumerGroup, []string{cfg.Kafka.Topics.Alerts}})
	}
	return gs
}

// drainPoll is how often WaitDrained asks the broker.
const drainPoll = 100 * time.Millisecond

// WaitDrained returns nil once held reports nothing held back upstream
// (a publisher's spool; nil: nothing is) and every group has committed
// the end of every partition of its topics, or ctx's error when it ends
// first. It asks the broker, not the consumers, so it holds for any Kafka
// and any process running the groups.
func WaitDrained(ctx context.Context, k config.KafkaConfig, groups []GroupTopics, held func() bool, log *slog.Logger) error {
	transport, err := kafkaopts.Transport(k)
	if err != nil {
		return err
	}
	cl := &kafka.Client{Addr: kafka.TCP(k.Brokers...), Transport: transport, Timeout: 5 * time.Second}
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if held != nil && held() {
			continue
		}
		if drained(ctx, cl, groups, log) {
			return nil
		}
	}
}

// drained reports whether every group's lag is zero now.
func drained(ctx context.Context, cl *kafka.Client, groups []GroupTopics, log *slog.Logger) bool {
	for _, g := range groups {
		lag, err := groupLag(ctx, cl, g.ID, g.Topics)
		if err != nil {
			// Transient (a group still joining, a coordinator moving):
			// asked again at the next tick.
			log.Debug("waiting for the pipeline to drain", "group", g.ID, "err", err)
			return false
		}
		if lag > 0 {
			log.Debug("waiting for the pipeline to drain", "group", g.ID, "lag", lag)
			return false
		}
	}
	return true
}

// groupLag is how many messages of topics the group has not committed.
func groupLag(ctx context.Context, cl *kafka.Client, group string, topics []string) (int64, error) {
	ps, err := groupOffsets(ctx, cl, group, topics)
	if err != nil {
		return 0, err
	}
	var lag int64
	for _, p := range ps {
		lag += p.lag()
	}
	return lag, nil
}

// partitionOffsets is where one partition of a group's topic stands, as the
// broker sees it.
type partitionOffsets struct {
	topic     string
	partition int
	first     int64 // oldest offset still in the log
	end       int64 // high watermark: the next offset to be written
	committed int64 // the group's committed offset; -1 when none
}

// lag is what the group has not committed of the partition: all of it
// when it committed nothing (or only what retention has deleted since).
func (p partitionOffsets) lag() int64 {
	c := p.committed
	if c < p.first {
		c = p.first
	}
	return max(p.end-c, 0)
}

// groupOffsets asks the broker for the first and end offsets of every
// partition of topics and for the group's committed offsets.
func groupOffsets(ctx context.Context, cl *kafka.Client, group string, topics []string) ([]partitionOffsets, error) {
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, err
	}
	ends := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	fetch := &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{}}
	for _, t := range md.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			ends.Topics[t.Name] = append(ends.Topics[t.Name], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
			fetch.Topics[t.Name] = append(fetch.Topics[t.Name], p.ID)
		}
	}
	lo, err := cl.ListOffsets(ctx, ends)
	if err != nil {
		return nil, err
	}
	committed, err := committedOffsets(ctx, cl, fetch)
	if err != nil {
		return nil, err
	}
	var out []partitionOffsets
	for topic, ps := range lo.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return nil, fmt.Errorf("topic %s partition %d: %w", topic, p.Partition, p.Error)
			}
			c, ok := committed[topic][p.Partition]
			if !ok {
				c = -1
			}
			out = append(out, partitionOffsets{topic: topic, partition: p.Partition, first: p.FirstOffset, end: p.LastOffset, committed: c})
		}
	}
	return out, nil
}

// committedOffsets is the group's committed offset of each partition of
// fetch, by topic.
func committedOffsets(ctx context.Context, cl *kafka.Client, fetch *kafka.OffsetFetchRequest) (map[string]map[int]int64, error) {
	of, err := cl.OffsetFetch(ctx, fetch)
	if err != nil {
		return nil, err
	}
	if of.Error != nil {
		return nil, of.Error
	}
	committed := map[string]map[int]int64{}
	for topic, ps := range of.Topics {
		committed[topic] = map[int]int64{}
		for _, p := range ps {
			if p.Error != nil {
				return nil, p.Error
			}
			committed[topic][p.Partition] = p.CommittedOffset
		}
	}
	return committed, nil
}
