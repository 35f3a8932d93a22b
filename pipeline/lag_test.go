package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
)

// TestLagMonitor (real Kafka): the lag of a group that stopped consuming
// is the broker's high watermark minus its committed offset, reached within
// two intervals, and it keeps growing as records arrive — where a consumer's
// own "as of the last message read" figure would stand still.
func TestLagMonitor(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	run := fmt.Sprint(time.Now().UnixNano())
	topic := "it-lagmon-" + run
	stalled, caughtUp := "it-lagmon-stalled-"+run, "it-lagmon-caught-up-"+run
	testenv.CreateTopics(t, brokers[0], 2, topic)
	writeMessages(t, brokers, topic, keyed(40)...)
	ends := endOffsets(t, brokers, topic, 2)
	commitOffsets(t, brokers, caughtUp, topic, ends)

	k := config.Default().Kafka
	k.Brokers = brokers
	const interval, readingWait = 2 * time.Second, 30 * time.Second
	reg := prometheus.NewRegistry()
	m, err := NewLagMonitor(k, []GroupTopics{{stalled, []string{topic}}, {caughtUp, []string{topic}}}, interval, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// The error series exist before the first reading: "no data" would
	// look the same as "no errors".
	testenv.Zeros(t, testenv.Series(t, reg), `kubesift_consumer_lag_errors_total{group="`+stalled+`"}`,
		`kubesift_consumer_lag_errors_total{group="`+caughtUp+`"}`)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	lagOf := func(group string) float64 { return testenv.Metric(t, reg, "kubesift_consumer_lag", "group", group) }
	tests := []struct {
		name, group, metric string
		want                float64
	}{
		{"nothing committed: the whole topic is lag", stalled, "kubesift_consumer_lag", 40},
		{"nothing committed: -1 per partition", stalled, "kubesift_consumer_committed_offset", -2},
		{"caught up: no lag", caughtUp, "kubesift_consumer_lag", 0},
		{"caught up: the committed ends", caughtUp, "kubesift_consumer_committed_offset", float64(ends[0] + ends[1])},
	}
	// One reading covers both groups; the first one is due at once, the
	// second after one interval. The waits allow more than that: what is
	// under test is that a reading comes from the broker and follows it,
	// and a starved machine (the suite beside other work) can take longer
	// than two intervals to answer.
	testenv.WaitForNil(t, "the first reading of both groups", readingWait, func() error {
		for _, tc := range tests {
			if got := testenv.Metric(t, reg, tc.metric, "group", tc.group, "topic", topic); got != tc.want {
				return fmt.Errorf("%s: %s{group=%s} = %v, want %v", tc.name, tc.metric, tc.group, got, tc.want)
			}
		}
		return nil
	})

	// Nobody consumes the new records: both lags grow by them.
	writeMessages(t, brokers, topic, keyed(10)...)
	testenv.WaitFor(t, "both lags to grow by the 10 new records", readingWait, func() bool {
		return lagOf(stalled) == 50 && lagOf(caughtUp) == 10
	})
	if got := testenv.Metric(t, reg, "kubesift_consumer_lag_errors_total"); got != 0 {
		t.Errorf("lag readings failed: %v", got)
	}
}
