package testenv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// ReadTopic reads every message of every partition of topic on the real
// broker, from the first offset to the high watermark at the time of the
// call: what a test compares against what it published. It fails the test
// if the topic cannot be read within three minutes.
//
// It uses a transport of its own: kafka-go's default one pools connections
// process-wide, and after a broker restart (the fault tests) a pooled
// connection fails its first request with "unexpected EOF". A fresh topic's
// leadership, or a restarted broker, can also answer "not leader" for a
// moment, so metadata and each partition are retried.
func ReadTopic(t testing.TB, broker, topic string) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, done := ownClient(broker)
	defer done()
	var meta *kafka.MetadataResponse
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		meta, err = c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil && len(meta.Topics) == 1 && meta.Topics[0].Error == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil || len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		t.Fatalf("metadata of %s: %v %+v", topic, err, meta)
	}
	var (
		out  []kafka.Message
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs = make(chan error, len(meta.Topics[0].Partitions))
	)
	for _, p := range meta.Topics[0].Partitions {
		wg.Go(func() {
			var msgs []kafka.Message
			var err error
			for attempt := 0; attempt < 10; attempt++ {
				if msgs, err = readPartition(ctx, c, broker, topic, p.ID); err == nil {
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			if err != nil {
				errs <- fmt.Errorf("partition %d: %w", p.ID, err)
				return
			}
			mu.Lock()
			out = append(out, msgs...)
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("read %s: %v", topic, err)
	}
	return out
}

// ownClient returns a client on a transport of its own (see ReadTopic) and
// the function that closes its connections.
func ownClient(broker string) (*kafka.Client, func()) {
	tr := &kafka.Transport{}
	return &kafka.Client{Addr: kafka.TCP(broker), Timeout: 20 * time.Second, Transport: tr}, tr.CloseIdleConnections
}

func readPartition(ctx context.Context, c *kafka.Client, broker, topic string, part int) ([]kafka.Message, error) {
	offs, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		topic: {kafka.FirstOffsetOf(part), kafka.LastOffsetOf(part)},
	}})
	if err != nil {
		return nil, err
	}
	var first, last int64
	for _, po := range offs.Topics[topic] {
		if po.Partition == part {
			if po.Error != nil {
				return nil, po.Error
			}
			first, last = po.FirstOffset, po.LastOffset
		}
	}
	if last <= first {
		return nil, nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: []string{broker}, Topic: topic, Partition: part,
		// Large enough for the end-to-end tests' 20 MB records. MaxWait
		// is the broker's wait plus a second for the response to arrive
		// on a loaded machine, as kafkaopts.ReaderMaxWait gives (this
		// package imports nothing of kubesift).
		MinBytes: 1, MaxBytes: 32 << 20, MaxWait: 200*time.Millisecond + time.Second,
		Dialer: &kafka.Dialer{Timeout: 10 * time.Second},
	})
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		return nil, err
	}
	var out []kafka.Message
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return out, fmt.Errorf("at %d of [%d,%d): %w", len(out), first, last, err)
		}
		out = append(out, m)
		if m.Offset+1 >= last {
			return out, nil
		}
	}
}

// CreateTopics creates topics with the given number of partitions each on
// the real broker (see CreateTopicConfigs).
func CreateTopics(t testing.TB, broker string, partitions int, topics ...string) {
	t.Helper()
	cfgs := make([]kafka.TopicConfig, len(topics))
	for i, tp := range topics {
		cfgs[i] = kafka.TopicConfig{Topic: tp, NumPartitions: partitions}
	}
	CreateTopicConfigs(t, broker, cfgs...)
}

// CreateTopicConfigs creates topics (a ReplicationFactor of 0 means 1; an
// existing topic is left as it is) and returns once the broker names a
// leader for every partition. The broker answers the request before that,
// and a produce in the gap gets "not leader for partition": the publisher
// spools such records and a test reading the topic right after would miss
// them.
// It fails the test after 30 seconds.
//
// It uses a transport of its own for the reason ReadTopic gives.
func CreateTopicConfigs(t testing.TB, broker string, topics ...kafka.TopicConfig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, done := ownClient(broker)
	defer done()
	req := &kafka.CreateTopicsRequest{}
	names := make([]string, len(topics))
	want := make(map[string]int, len(topics))
	for i, tc := range topics {
		if tc.ReplicationFactor == 0 {
			tc.ReplicationFactor = 1
		}
		req.Topics = append(req.Topics, tc)
		names[i], want[tc.Topic] = tc.Topic, tc.NumPartitions
	}
	res, err := c.CreateTopics(ctx, req)
	if err != nil {
		t.Fatalf("create topics %v: %v", names, err)
	}
	for tp, err := range res.Errors {
		switch {
		case errors.Is(err, kafka.TopicAlreadyExists):
			want[tp] = 0 // whatever partitions it has
		case err != nil:
			t.Fatalf("create topic %s: %v", tp, err)
		}
	}
	WaitFor(t, fmt.Sprintf("a leader for every partition of %v", names), 30*time.Second, func() bool {
		md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		return err == nil && leadersReady(md.Topics, want)
	})
}

// leadersReady reports whether every topic in want has its partitions (the
// number want gives; 0: any, at least one), each with a leader.
func leadersReady(topics []kafka.Topic, want map[string]int) bool {
	if len(topics) != len(want) {
		return false
	}
	for _, tp := range topics {
		n, ok := want[tp.Name]
		if !ok || tp.Error != nil || len(tp.Partitions) == 0 || n > 0 && len(tp.Partitions) != n {
			return false
		}
		for _, pt := range tp.Partitions {
			if pt.Error != nil || pt.Leader.ID < 0 {
				return false
			}
		}
	}
	return true
}

// DeleteTopics deletes a test's topics from the real broker at cleanup, so
// repeated runs do not fill the shared server; errors (a topic already
// gone) are ignored. It uses a transport of its own for the reason ReadTopic
// gives.
func DeleteTopics(broker string, topics ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, done := ownClient(broker)
	defer done()
	_, _ = c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
}

// ProduceError words an error of kafka.Writer.WriteMessages for a test
// failure: a kafka.WriteErrors holds one error per message, thousands of
// the same text when a broker refuses a batch, so it is summarised as how
// many messages failed and its distinct errors.
func ProduceError(err error) string {
	var we kafka.WriteErrors
	if !errors.As(err, &we) {
		return err.Error()
	}
	seen := map[string]bool{}
	var distinct []string
	for _, e := range we {
		if e != nil && !seen[e.Error()] && len(distinct) < 5 {
			seen[e.Error()] = true
			distinct = append(distinct, e.Error())
		}
	}
	return fmt.Sprintf("%d of %d messages not written: %s", we.Count(), len(we), strings.Join(distinct, "; "))
}
