package testenv

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// TestIntegrationCreateTopics: on the real broker, CreateTopics returns
// only once every partition of every topic has a leader, and a second call
// for existing topics is not an error, even with another partition count
// (the topic is left as it is).
func TestIntegrationCreateTopics(t *testing.T) {
	broker := KafkaBrokers(t)[0]
	base := fmt.Sprintf("testenv-create-%d", time.Now().UnixNano())
	topics := []string{base + "-a", base + "-b"}
	c := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 20 * time.Second, Transport: &kafka.Transport{}}
	t.Cleanup(func() {
		_, _ = c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: topics})
	})
	// In order: the later rounds find the topics the first made.
	for _, round := range []struct {
		name       string
		partitions int
	}{{"new topics", 3}, {"existing topics", 3}, {"existing topics, another count", 5}} {
		t.Run(round.name, func(t *testing.T) {
			CreateTopics(t, broker, round.partitions, topics...)
			md, err := c.Metadata(context.Background(), &kafka.MetadataRequest{Topics: topics})
			if err != nil {
				t.Fatal(err)
			}
			if !leadersReady(md.Topics, map[string]int{topics[0]: 3, topics[1]: 3}) {
				t.Errorf("after CreateTopics: %+v", md.Topics)
			}
		})
	}
}

func TestProduceError(t *testing.T) {
	noLeader := errors.New("topic partition has no leader")
	many := make(kafka.WriteErrors, 5000)
	for i := range many {
		many[i] = noLeader
	}
	many[7] = nil
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"plain", errors.New("dial: refused"), "dial: refused"},
		{"one text many times", many, "4999 of 5000 messages not written: topic partition has no leader"},
		{"wrapped, distinct texts", fmt.Errorf("write: %w", kafka.WriteErrors{noLeader, errors.New("too large"), nil}),
			"2 of 3 messages not written: topic partition has no leader; too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ProduceError(tc.err); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
