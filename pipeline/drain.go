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

// PipelineGroups are the consumer groups of cfg's processor and notifier:
// when both have committed the end of what they read, every record
// published is indexed and every alert notified.
func PipelineGroups(cfg *config.Config) []GroupTopics {
	return []GroupTopics{
		{cfg.Processor.GroupID, cfg.Processor.ConsumedTopics(cfg.Kafka)},
		{cfg.Notify.ConsumerGroup, []string{cfg.Kafka.Topics.Alerts}},
	}
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
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return 0, err
	}
	ends := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	fetch := &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{}}
	for _, t := range md.Topics {
		if t.Error != nil {
			return 0, fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			ends.Topics[t.Name] = append(ends.Topics[t.Name], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
			fetch.Topics[t.Name] = append(fetch.Topics[t.Name], p.ID)
		}
	}
	lo, err := cl.ListOffsets(ctx, ends)
	if err != nil {
		return 0, err
	}
	committed, err := committedOffsets(ctx, cl, fetch)
	if err != nil {
		return 0, err
	}
	var lag int64
	for topic, ps := range lo.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return 0, p.Error
			}
			c, ok := committed[topic][p.Partition]
			if !ok || c < p.FirstOffset {
				c = p.FirstOffset // nothing committed yet (-1): all of it is lag
			}
			if p.LastOffset > c {
				lag += p.LastOffset - c
			}
		}
	}
	return lag, nil
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
