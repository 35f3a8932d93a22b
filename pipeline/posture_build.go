package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	goes "github.com/elastic/go-elasticsearch/v8"

	"github.com/kubesift/kubesift/collector/objects"
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
		Actors: auditActors(client, cfg.Sink.Elasticsearch.Streams.Audit), Documents: docs, Writer: borrowedWriter{es},
		Registerer: deps.Registerer, Logger: log,
	})
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
func auditActors(client *goes.Client, stream string) ActorFinder {
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
