package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/collector/publish"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/collector/sources"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/kafkatopics"
	"github.com/kubesift/kubesift/internal/lifecycle"
	"github.com/kubesift/kubesift/internal/obs"
)

func newCollectCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "collect",
		Short: "Run the per-cluster collector: audit webhook, audit log tail, Events and objects, published to Kafka",
		Long: `collect runs the sources enabled under collector: (at least one must be):
  - collector.audit_webhook: the HTTPS receiver for kube-apiserver's audit webhook backend;
  - collector.audit_tail: the tail of the audit log files the API server writes;
  - collector.events: informers on Kubernetes Events (events.k8s.io/v1 and/or v1), shipped
    by one collector per cluster (leader election on a Lease, on by default) from a
    watermark kept on a Lease (on by default), so a restart does not ship them again;
  - collector.objects: informers on the kinds the posture checks read, their current state
    published to kafka.topics.objects by one collector per cluster (leader election).
The Events and objects sources, and the read of the kube-system namespace UID that
identifies the cluster, use the API access of collector.kubeconfig, else the in-cluster
configuration in a pod (without either, collector.cluster_uid names the cluster and those
two sources cannot start). Every record is redacted and held to the size policy, stamped
with the cluster identity (cluster.name and the UID), and published to Kafka. A request or
a line is acknowledged (2xx, tail position) only once Kafka or the disk spool has it.
/metrics, /healthz and /readyz are served on server.listen. SIGINT/SIGTERM stop the sources
(the webhook answers 503 meanwhile), write the tail positions and close the publisher.`,
		Example: `  # the collector as deployed (see config print-defaults for every key)
  kubesift collect -c /etc/kubesift/collector.yaml
  # collector.yaml for a control-plane node, tailing the audit log:
  #   cluster: {name: prod-eu}
  #   kafka: {brokers: ["kafka-0:9092"]}
  #   collector:
  #     audit_tail: {enabled: true, paths: [/var/log/kubernetes/audit/audit.log]}`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{annotationListens: "server.listen,collector.audit_webhook.listen"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.load(cmd)
			if err != nil {
				return err
			}
			return runCollect(cmd.Context(), cfg, log)
		},
	}
}

// collectPublisher is what collect needs of the publisher: the sources'
// contract, and Close to flush it on shutdown.
type collectPublisher interface {
	collector.Publisher
	Close(ctx context.Context) error
}

// newPublisher builds the collector's Kafka publisher with its disk spool
// (package collector/publish): Publish returns nil only when every record is
// acknowledged by Kafka (acks=all) or written to the spool, and Close flushes
// or spools what is in flight.
func newPublisher(_ context.Context, cfg *config.Config, reg prometheus.Registerer, log *slog.Logger) (collectPublisher, error) {
	if len(cfg.Kafka.Brokers) == 0 {
		return nil, errors.New("kafka.brokers: required by collect")
	}
	return publish.New(publish.Options{Publish: cfg.Publish, Kafka: cfg.Kafka, Registerer: reg, Logger: log})
}

// publisherFactory is newPublisher; tests replace it with an in-memory one.
var publisherFactory = newPublisher

// publisherCloseTimeout bounds the publisher's flush on shutdown.
const publisherCloseTimeout = 30 * time.Second

// runCollect builds the sources from cfg and runs them until ctx ends or one
// of them fails.
func runCollect(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	cc := &cfg.Collector
	if !cc.AuditWebhook.Enabled && !cc.AuditTail.Enabled && !cc.Events.Enabled && !cc.Objects.Enabled {
		return errors.New("collect: no source enabled; set collector.audit_webhook.enabled, collector.audit_tail.enabled, collector.events.enabled or collector.objects.enabled")
	}
	// A soft memory limit bounds RSS under load (collector.memory_limit).
	obs.ApplyMemoryLimit(cc.MemoryLimit, log)
	srv := obs.New(log)
	cluster := collector.ClusterIdentity(ctx, cfg, log)
	log.Info("collector starting", "cluster", cluster.Name, "cluster_uid", cluster.UID)

	san, err := newSanitizer(cc, srv.Registry, log)
	if err != nil {
		return fmt.Errorf("collect: %w", err)
	}
	pub, err := publisherFactory(ctx, cfg, srv.Registry, log)
	if err != nil {
		return fmt.Errorf("collect: %w", err)
	}
	// Deferred, so it runs once the group below has returned: nothing
	// publishes any more.
	defer closePublisher(pub, log)
	srcs, err := sources.New(sources.Options{Config: *cc, Cluster: cluster, Sanitizer: san, Publisher: pub,
		Registry: srv.Registry, SetReady: srv.SetReady, Logger: log})
	if err != nil {
		return fmt.Errorf("collect: %w", err)
	}
	// The group stops in reverse: the sources first, then /metrics, which
	// reports on them to the end.
	g := lifecycle.New(log)
	addMetricsServer(g, srv, cfg.Server)
	addTopicWatch(g, srv, cfg, log, kafkatopics.CollectorTopics(cfg))
	for _, s := range srcs {
		g.Add(s.Name, s.Run)
	}
	err = g.Run(ctx)
	log.Info("collector stopped")
	return err
}

// newSanitizer builds the redaction and size policy every source applies,
// and warns when redaction is off.
func newSanitizer(cc *config.CollectorConfig, reg prometheus.Registerer, log *slog.Logger) (*redact.Sanitizer, error) {
	san, err := redact.New(cc.Redaction, cc.Size, cc.DeadLetterMaxBytes, reg, log)
	if err != nil {
		return nil, err
	}
	if !san.Enabled() {
		log.Warn("redaction is disabled (collector.redaction.enabled: false): Secret data and tokens are published as the API server logged them")
	}
	return san, nil
}

// closePublisher flushes the publisher (or spools what is in flight),
// within publisherCloseTimeout. A failure is logged and leaves the exit
// status to the sources: the records it concerns were never acknowledged
// upstream, or wait in the spool for the next start (publish.Publisher.Close).
func closePublisher(pub collectPublisher, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), publisherCloseTimeout)
	defer cancel()
	if err := pub.Close(ctx); err != nil {
		log.Error("closing the publisher", "err", err)
	}
}
