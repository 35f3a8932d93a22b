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
	"github.com/kubesift/kubesift/sink/ndjson"
)

// newPosture builds the posture consumer of cfg on the processor's store w:
// findings, scores and posture alert documents share its buffer, retries
// and budget, and its metrics. The store stays the processor's (borrowed):
// BuiltProcessor.Add starts the posture consumer after the processor, so it
// stops first and drains into a store that is still open, and the processor
// closes it. The findings go where the store keeps documents —
// Elasticsearch's findings index, or the NDJSON store's files; any other
// store (a command's own) has no findings sink, which is said, and the
// consumer is not built (nil, nil).
func newPosture(cfg *config.Config, deps ProcessorDeps, set *rules.Set, w sink.Writer, docs *ecs.Builder, log *slog.Logger) (*PostureConsumer, error) {
	var (
		findings FindingsSink
		states   StateReader
		err      error
	)
	switch w := w.(type) {
	case *elasticsearch.Writer:
		findings, states, err = esFindings(cfg.Sink.Elasticsearch, w, log)
	case *ndjson.Writer:
		findings, states, err = ndjsonFindings(cfg.Sink.Elasticsearch, w, log)
	default:
		log.Warn("processor.posture.enabled is ignored: the posture consumer writes to Elasticsearch or the NDJSON store only")
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("posture: %w", err)
	}
	if deps.WrapFindings != nil {
		findings, states = deps.WrapFindings(findings, states)
	}
	return NewPosture(PostureOptions{
		Kafka: cfg.Kafka, Processor: cfg.Processor, Engine: posture.New(set), Findings: findings, States: states,
		Documents: docs, Writer: borrowedWriter{w}, Registerer: deps.Registerer, Logger: log,
	})
}

// esFindings are the findings sink and state reader on Elasticsearch.
func esFindings(cfg config.ElasticsearchConfig, es *elasticsearch.Writer, log *slog.Logger) (FindingsSink, StateReader, error) {
	fw, err := elasticsearch.NewFindingsWriter(es, cfg)
	if err != nil {
		return nil, nil, err
	}
	client, err := elasticsearch.NewClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	return fw, skippedLogged(cfg.Findings.Index, log, func(ctx context.Context, cluster string) ([]posture.Decision, int, error) {
		return elasticsearch.FindingStates(ctx, client, cfg.Findings.Index, cluster)
	}), nil
}

// ndjsonFindings are the findings sink and state reader on the NDJSON
// store: its findings file is the findings index.
func ndjsonFindings(cfg config.ElasticsearchConfig, w *ndjson.Writer, log *slog.Logger) (FindingsSink, StateReader, error) {
	fw, err := ndjson.NewFindingsWriter(w, cfg)
	if err != nil {
		return nil, nil, err
	}
	return fw, skippedLogged(cfg.Findings.Index, log, fw.States), nil
}

// skippedLogged is a StateReader over read that says how many stored
// states could not be read.
func skippedLogged(index string, log *slog.Logger, read func(context.Context, string) ([]posture.Decision, int, error)) StateReader {
	return func(ctx context.Context, cluster string) ([]posture.Decision, error) {
		ds, skipped, err := read(ctx, cluster)
		if skipped > 0 {
			log.Warn("finding states that cannot be read were skipped; those findings are judged afresh",
				"cluster", cluster, "index", index, "skipped", skipped)
		}
		return ds, err
	}
}

// borrowedWriter is a writer whose owner is someone else: Close does not
// close it.
type borrowedWriter struct{ sink.Writer }

func (borrowedWriter) Close(context.Context) error { return nil }
