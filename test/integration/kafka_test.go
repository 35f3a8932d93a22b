package integration

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/testenv"
)

type seen struct {
	mu     sync.Mutex
	unique map[string]bool // "partition/offset"
	byRdr  map[int]map[int]int
}

func (s *seen) add(reader int, m kafka.Message) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unique[fmt.Sprintf("%d/%d", m.Partition, m.Offset)] = true
	if s.byRdr[reader] == nil {
		s.byRdr[reader] = map[int]int{}
	}
	s.byRdr[reader][m.Partition]++
	return len(s.unique)
}

func newGroupReader(brokers []string, topic, group string) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:           brokers,
		GroupID:           group,
		Topic:             topic,
		MinBytes:          1,
		MaxBytes:          4 << 20,
		MaxWait:           250 * time.Millisecond,
		HeartbeatInterval: 500 * time.Millisecond,
		SessionTimeout:    6 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		StartOffset:       kafka.FirstOffset,
		CommitInterval:    0, // synchronous commits: CommitMessages returns after the broker has them
	})
}

// TestKafkaGround writes 10,000 records with acks=all, reads them with two
// readers of one consumer group that split the partitions, commits part of
// the way, and checks that a restarted reader resumes exactly at the committed
// offsets.
func TestKafkaGround(t *testing.T) {
	testenv.Short(t)
	brokers := testenv.KafkaBrokers(t)
	topic := fmt.Sprintf("it-ground-%d", time.Now().UnixNano())
	group := topic + "-group"
	const total, partitions = 10000, 4
	testenv.CreateTopics(t, brokers[0], partitions, topic)

	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 10 * time.Millisecond,
		BatchSize:    500,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	msgs := make([]kafka.Message, total)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: []byte("cluster/user-" + strconv.Itoa(i%97)), Value: []byte(`{"n":` + strconv.Itoa(i) + `}`)}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// Phase 1: two readers in one group, each committing what it processed,
	// until 6,000 distinct records have been seen.
	s := &seen{unique: map[string]bool{}, byRdr: map[int]map[int]int{}}
	committed := make([]int64, partitions) // next offset to read, per partition
	var cmu sync.Mutex
	phase1 := 6000
	rctx, rcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	readers := []*kafka.Reader{newGroupReader(brokers, topic, group), newGroupReader(brokers, topic, group)}
	for i, r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := r.FetchMessage(rctx)
				if err != nil {
					if rctx.Err() != nil {
						return
					}
					// Group errors right after a broker restart (another
					// package's fault test) are transient: kafka-go reports
					// them and keeps the group; read on.
					t.Logf("reader %d: %v (retrying)", i, err)
					time.Sleep(200 * time.Millisecond) // a consumer's pause before retrying
					continue
				}
				// Commit with the outer context: cancelling rctx must not
				// abandon a commit that may already have reached the broker.
				if err := r.CommitMessages(ctx, m); err != nil {
					// A commit for a partition revoked by a rebalance fails;
					// the message will be delivered again to its new owner.
					continue
				}
				cmu.Lock()
				committed[m.Partition] = max(committed[m.Partition], m.Offset+1)
				cmu.Unlock()
				if s.add(i, m) >= phase1 {
					rcancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	rcancel()
	for _, r := range readers {
		r.Close()
	}
	if len(s.byRdr[0]) == 0 || len(s.byRdr[1]) == 0 {
		t.Fatalf("the two readers did not split the work: %v", s.byRdr)
	}
	covered := map[int]bool{}
	for _, parts := range s.byRdr {
		for p := range parts {
			covered[p] = true
		}
	}
	if len(covered) != partitions {
		t.Errorf("readers covered partitions %v, want all %d", covered, partitions)
	}
	t.Logf("phase 1: partitions by reader %v; committed %v", s.byRdr, committed)

	// Phase 2: a restarted reader resumes exactly at the committed offsets.
	r := newGroupReader(brokers, topic, group)
	defer r.Close()
	first := map[int]int64{}
	for len(s.unique) < total {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("timed out with %d of %d records", len(s.unique), total)
			}
			t.Logf("restarted reader: %v (retrying)", err)
			time.Sleep(200 * time.Millisecond) // a consumer's pause before retrying
			continue
		}
		if _, ok := first[m.Partition]; !ok {
			first[m.Partition] = m.Offset
		}
		s.add(2, m)
	}
	for p := 0; p < partitions; p++ {
		if got, ok := first[p]; ok && got != committed[p] {
			t.Errorf("partition %d: restarted reader began at offset %d, committed was %d", p, got, committed[p])
		}
	}
	if len(s.unique) != total {
		t.Errorf("read %d distinct records, want %d", len(s.unique), total)
	}
}
