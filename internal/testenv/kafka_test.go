package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// TestIntegrationCreateTopics: on the real broker, CreateTopics returns
// only once every partition of every topic has a leader, and a second call
// for existing topics is not an error.
func TestIntegrationCreateTopics(t *testing.T) {
	broker := KafkaBrokers(t)[0]
	base := fmt.Sprintf("testenv-create-%d", time.Now().UnixNano())
	topics := []string{base + "-a", base + "-b"}
	c := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 20 * time.Second, Transport: &kafka.Transport{}}
	t.Cleanup(func() {
		_, _ = c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: topics})
	})
	// In order: the second round finds the topics the first made.
	for _, round := range []string{"new topics", "existing topics"} {
		t.Run(round, func(t *testing.T) {
			CreateTopics(t, broker, 3, topics...)
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
