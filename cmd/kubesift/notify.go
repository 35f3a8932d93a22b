package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/kafkatopics"
	"github.com/kubesift/kubesift/internal/lifecycle"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/pipeline"
)

func newNotifyCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "notify",
		Short: "Run the notifier: route, group, silence and deliver alerts to Slack and webhooks",
		Long: `notify joins the Kafka consumer group notify.consumer_group on the alerts topic
(kafka.topics.alerts, keyed <cluster>/<rule_id> by the processor), routes every alert through
notify.route, groups it (group_wait, group_interval, repeat_interval), applies inhibit rules and
silences, and delivers notifications to the receivers' Slack and webhook integrations with
retries. An alert's offset is committed only once it is final (delivered, failed for good or
muted), so a notifier that dies re-reads what it had not delivered. Delivery states are written
to the alerts index (sink.elasticsearch.alerts_index, field kubesift.delivery.state).
With notify.deadman.enabled, a cluster whose newest record in the audit and Events data
streams is older than its threshold raises a kubesift-deadman alert. Silences live in
Elasticsearch (notify.silences.index) and are served on
notify.silences.api.listen for "kubesift silence". It does not start before it has read the
silences. /metrics, /healthz and /readyz are served on server.listen. docs/alerting.md
describes the configuration.`,
		Example: `  kubesift notify -c /etc/kubesift/notify.yaml
  # notify.yaml:
  #   kafka: {brokers: ["kafka-0:9092"]}
  #   sink: {elasticsearch: {addresses: ["https://es:9200"], api_key_file: /run/secrets/es-key}}
  #   notify:
  #     route: {receiver: security}
  #     receivers:
  #       - name: security
  #         slack_configs: [{url_file: /run/secrets/slack-webhook, kibana_url: "https://kibana:5601"}]
  #     silences: {api: {listen: ":9095", token_file: /run/secrets/silence-token}}
  #     deadman: {enabled: true, threshold: 15m}`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{annotationListens: "server.listen,notify.silences.api.listen"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.load(cmd)
			if err != nil {
				return err
			}
			return runNotify(cmd.Context(), cfg, log)
		},
	}
}

// runNotify builds the notifier (pipeline.NewNotifier) and runs it with the
// metrics server until ctx ends.
func runNotify(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	srv := obs.New(log)
	srv.SetReady("notify", errors.New("starting"))
	g := lifecycle.New(log)
	addMetricsServer(g, srv, cfg.Server)
	addTopicWatch(g, srv, cfg, log, kafkatopics.NotifierTopics(cfg))
	if err := addLagMonitor(g, cfg, pipeline.ConsumerGroups(cfg, false, true), srv.Registry, log); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	nt, err := pipeline.NewNotifier(ctx, cfg, pipeline.NotifierDeps{Registerer: srv.Registry, Logger: log})
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	nt.Add(g)
	// Ready once built: the silences have been read.
	srv.SetReady("notify", nil)
	err = g.Run(ctx)
	log.Info("notifier stopped")
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
}
