package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
)

// commitOffsets commits offsets (partition -> next offset) of topic for a
// group no member has joined, as a consumer group does at its end.
func commitOffsets(t *testing.T, brokers []string, group, topic string, offsets map[int]int64) {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{}}
	var commits []kafka.OffsetCommit
	for p, off := range offsets {
		commits = append(commits, kafka.OffsetCommit{Partition: p, Offset: off})
	}
	res, err := c.OffsetCommit(context.Background(), &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{topic: commits}})
	if err != nil {
		t.Fatalf("offset commit: %v", err)
	}
	for _, ps := range res.Topics {
		for _, p := range ps {
			if p.Error != nil {
				t.Fatalf("offset commit, partition %d: %v", p.Partition, p.Error)
			}
		}
	}
}

// keyed is n messages with distinct keys, which spread over partitions.
func keyed(n int) []kafka.Message {
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: []byte(fmt.Sprint("key-", i)), Value: []byte("v")}
	}
	return msgs
}

// TestGroupLag (real Kafka): the lag is what a group has not committed of
// every partition, and all of a partition when it committed nothing.
func TestGroupLag(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	run := fmt.Sprint(time.Now().UnixNano())
	topic := "it-lag-" + run
	testenv.CreateTopics(t, brokers[0], 2, topic)
	writeMessages(t, brokers, topic, keyed(40)...)
	ends := endOffsets(t, brokers, topic, 2)
	if ends[0] == 0 || ends[1] == 0 {
		t.Fatalf("the records did not spread over both partitions: %v", ends)
	}
	tests := []struct {
		name   string
		commit map[int]int64
		want   int64
	}{
		{"nothing committed", nil, 40},
		{"one partition committed", map[int]int64{0: ends[0]}, ends[1]},
		{"half of one partition", map[int]int64{0: ends[0], 1: ends[1] / 2}, ends[1] - ends[1]/2},
		{"everything committed", map[int]int64{0: ends[0], 1: ends[1]}, 0},
	}
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{}}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			group := fmt.Sprintf("it-lag-%s-%d", run, i)
			if tc.commit != nil {
				commitOffsets(t, brokers, group, topic, tc.commit)
			}
			lag, err := groupLag(context.Background(), cl, group, []string{topic})
			if err != nil {
				t.Fatal(err)
			}
			if lag != tc.want {
				t.Fatalf("lag %d, want %d", lag, tc.want)
			}
		})
	}
}

// TestWaitDrained (real Kafka): WaitDrained returns once every group has
// committed the end of its topics and nothing is held upstream, and waits
// (until its context ends) while either is not so.
func TestWaitDrained(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	run := fmt.Sprint(time.Now().UnixNano())
	records, alerts := "it-drain-records-"+run, "it-drain-alerts-"+run
	testenv.CreateTopics(t, brokers[0], 1, records, alerts)
	writeMessages(t, brokers, records, keyed(10)...)
	writeMessages(t, brokers, alerts, keyed(3)...)
	k := config.Default().Kafka
	k.Brokers = brokers
	tests := []struct {
		name     string
		commit   []string // topics the groups commit the end of
		held     bool
		wantDone bool
	}{
		{"both groups at the end", []string{records, alerts}, false, true},
		{"the notifier's group behind", []string{records}, false, false},
		{"nothing committed", nil, false, false},
		{"at the end but the publisher holds records", []string{records, alerts}, true, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			groups := []GroupTopics{
				{fmt.Sprintf("it-drain-proc-%s-%d", run, i), []string{records}},
				{fmt.Sprintf("it-drain-notify-%s-%d", run, i), []string{alerts}},
			}
			for _, topic := range tc.commit {
				g := groups[0].ID
				if topic == alerts {
					g = groups[1].ID
				}
				commitOffsets(t, brokers, g, topic, endOffsets(t, brokers, topic, 1))
			}
			// Ten polls are enough to see a drained pipeline; a pipeline
			// that is not drained must still be waited for at the end.
			ctx, cancel := context.WithTimeout(context.Background(), 10*drainPoll+2*time.Second)
			defer cancel()
			err := WaitDrained(ctx, k, groups, func() bool { return tc.held }, slog.New(slog.DiscardHandler))
			switch {
			case tc.wantDone && err != nil:
				t.Fatalf("WaitDrained: %v", err)
			case !tc.wantDone && !errors.Is(err, context.DeadlineExceeded):
				t.Fatalf("WaitDrained = %v, want it to wait until the context ended", err)
			}
		})
	}
}
