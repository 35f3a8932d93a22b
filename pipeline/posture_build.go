package pipeline

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// newPosture builds the posture consumer of cfg on the processor's
// Elasticsearch writer: findings, scores and posture alert documents share
// its bulk requests, retries and queue budget, and its metrics. The writer
// stays the processor's (borrowed): BuiltProcessor.Add starts the posture
// consumer after the processor, so it stops first and drains into a
// writer that is still open, and the processor closes it.
func newPosture(cfg *config.Config, deps ProcessorDeps, set *rules.Set, es *elasticsearch.Writer, docs *ecs.Builder, log *slog.Logger) (*PostureConsumer, error) {
	fw, err := elasticsearch.NewFindingsWriter(es, cfg.Sink.Elasticsearch)
	if err != nil {
		return nil, fmt.Errorf("posture: %w", err)
	}
	client, err := elasticsearch.NewClient(cfg.Sink.Elasticsearch)
	if err != nil {
		return nil, fmt.Errorf("posture: %w", err)
	}
	index := cfg.Sink.Elasticsearch.Findings.Index
	states := func(ctx context.Context, cluster string) ([]posture.Decision, error) {
		ds, skipped, err := elasticsearch.FindingStates(ctx, client, index, cluster)
		if skipped > 0 {
			log.Warn("finding states that cannot be read were skipped; those findings are judged afresh",
				"cluster", cluster, "index", index, "skipped", skipped)
		}
		return ds, err
	}
	return NewPosture(PostureOptions{
		Kafka: cfg.Kafka, Processor: cfg.Processor, Engine: posture.New(set), Findings: fw, States: states,
		Documents: docs, Writer: borrowedWriter{es}, Registerer: deps.Registerer, Logger: log,
	})
}

// borrowedWriter is a writer whose owner is someone else: Close does not
// close it.
type borrowedWriter struct{ sink.Writer }

func (borrowedWriter) Close(context.Context) error { return nil }
