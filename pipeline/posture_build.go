package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/kubesift/kubesift/collector/objects"
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
		actors   ActorFinder // nil on the NDJSON store: it has no audit records to search
		usage    UsageStore  // likewise
		err      error
	)
	switch w := w.(type) {
	case *elasticsearch.Writer:
		findings, states, actors, err = esFindings(cfg.Sink.Elasticsearch, w, log)
		if err == nil && cfg.Processor.Posture.RBACUsage.Enabled && cfg.Sink.Elasticsearch.Findings.UsageIndex != "" {
			usage, err = esUsage(cfg.Sink.Elasticsearch)
		}
	case *ndjson.Writer:
		findings, states, err = ndjsonFindings(cfg.Sink.Elasticsearch, w, log)
		if cfg.Processor.Posture.RBACUsage.Enabled {
			log.Info("processor.posture.rbac_usage is off on the NDJSON store: it has no audit search")
		}
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
		Actors: actors, Usage: usage, Documents: docs, Writer: borrowedWriter{w}, Registerer: deps.Registerer, Logger: log,
	})
}

// esUsage is the RBAC usage store on Elasticsearch: the usage index, and
// the audit data stream the record processor writes.
func esUsage(cfg config.ElasticsearchConfig) (UsageStore, error) {
	client, err := elasticsearch.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	return elasticsearch.NewUsageStore(client, cfg.Findings.UsageIndex, cfg.Streams.Audit), nil
}

// esFindings are the findings sink, state reader and actor finder on
// Elasticsearch.
func esFindings(cfg config.ElasticsearchConfig, es *elasticsearch.Writer, log *slog.Logger) (FindingsSink, StateReader, ActorFinder, error) {
	fw, err := elasticsearch.NewFindingsWriter(es, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	client, err := elasticsearch.NewClient(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	return fw, skippedLogged(cfg.Findings.Index, log, func(ctx context.Context, cluster string) ([]posture.Decision, int, error) {
		return elasticsearch.FindingStates(ctx, client, cfg.Findings.Index, cluster)
	}), auditActors(client, cfg.Streams.Audit), nil
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

// The time match of an actor lookup: an audit write at most actorSkew
// after the collector saw the change (the two clocks differ) and at most
// actorWindow before it (the collector's queue and batching delay it).
const (
	actorSkew   = 2 * time.Second
	actorWindow = time.Minute
)

// auditActors finds the authors of changes in the audit data stream the
// record processor writes.
func auditActors(client *elasticsearch.Client, stream string) ActorFinder {
	return func(ctx context.Context, ch ActorChange) (*posture.Actor, error) {
		group, resource, ok := objects.Resource(ch.Kind)
		if !ok {
			return nil, fmt.Errorf("kind %q: no API resource known", ch.Kind)
		}
		return elasticsearch.FindActor(ctx, client, stream, elasticsearch.ActorQuery{Cluster: ch.Cluster,
			APIGroup: group, Resource: resource, Namespace: ch.Namespace, Name: ch.Name, ResourceVersion: ch.ResourceVersion,
			Deleted: ch.Deleted, ObservedAt: ch.ObservedAt, Skew: actorSkew, Window: actorWindow})
	}
}

// borrowedWriter is a writer whose owner is someone else: Close does not
// close it.
type borrowedWriter struct{ sink.Writer }

func (borrowedWriter) Close(context.Context) error { return nil }
