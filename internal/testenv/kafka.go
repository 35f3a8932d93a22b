package testenv

import (
	"context"
	"fmt"
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
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 20 * time.Second, Transport: tr}
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
		// Large enough for the end-to-end tests' 20 MB records.
		MinBytes: 1, MaxBytes: 32 << 20, MaxWait: 200 * time.Millisecond,
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
