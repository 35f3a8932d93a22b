// Package publishtest gives the tests of the collector's sources a real
// publish.Publisher on an in-process Kafka (kfake), with the default publish
// limits, so that they see what the real publisher does with their records
// (dead letters, size limits) without the test ground.
package publishtest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kubesift/kubesift/collector/publish"
	"github.com/kubesift/kubesift/internal/config"
)

// New starts a one-broker kfake cluster holding the topics named
// prefix.audit, .events, .objects and .dlq, and a Publisher on it with the
// default publish section (its spool in a temporary directory), its metrics
// on reg. Both are closed when the test ends. It returns the Kafka section
// the Publisher uses (brokers and topics, for reading them back).
func New(t testing.TB, prefix string, reg prometheus.Registerer) (*publish.Publisher, config.KafkaConfig) {
	t.Helper()
	k := config.Default().Kafka
	k.Topics = config.TopicsConfig{Audit: prefix + ".audit", Events: prefix + ".events", Objects: prefix + ".objects",
		Alerts: prefix + ".alerts", DLQ: prefix + ".dlq"}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, k.Topics.Audit, k.Topics.Events, k.Topics.Objects, k.Topics.DLQ))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	k.Brokers = c.ListenAddrs()
	pc := config.Default().Publish
	pc.Spool.Dir = t.TempDir()
	pub, err := publish.New(publish.Options{Kafka: k, Publish: pc, Registerer: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := pub.Close(ctx); err != nil {
			t.Errorf("close publisher: %v", err)
		}
	})
	return pub, k
}
