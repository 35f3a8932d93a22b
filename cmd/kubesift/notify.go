package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/spf13/cobra"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/kafkaopts"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/internal/tlsfiles"
	"github.com/kubesift/kubesift/pipeline"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink/elasticsearch"
	"github.com/kubesift/kubesift/sink/notify"
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
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.load(cmd)
			if err != nil {
				return err
			}
			return runNotify(cmd.Context(), cfg, log)
		},
	}
}

// buildReceivers turns the configured receivers into integrations. Their
// names ("security/slack[0]") appear in logs, metrics and delivery
// reasons; URLs never do.
func buildReceivers(cfg *config.NotifyConfig) (map[string][]notify.Integration, error) {
	client := &http.Client{Timeout: cfg.Timeout}
	out := map[string][]notify.Integration{}
	for i, r := range cfg.Receivers {
		for j, sc := range r.SlackConfigs {
			s, err := notify.NewSlack(sc, client)
			if err != nil {
				return nil, fmt.Errorf("notify.receivers[%d].slack_configs[%d]: %w", i, j, err)
			}
			out[r.Name] = append(out[r.Name], notify.Integration{Name: fmt.Sprintf("%s/slack[%d]", r.Name, j), Notifier: s})
		}
		for j, wc := range r.WebhookConfigs {
			w, err := notify.NewWebhook(wc, client)
			if err != nil {
				return nil, fmt.Errorf("notify.receivers[%d].webhook_configs[%d]: %w", i, j, err)
			}
			out[r.Name] = append(out[r.Name], notify.Integration{Name: fmt.Sprintf("%s/webhook[%d]", r.Name, j), Notifier: w})
		}
	}
	return out, nil
}

// runNotify wires silences, the dispatcher, the delivery-state sink, the
// silence API and the alerts consumer, and runs them until ctx ends.
func runNotify(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	n := &cfg.Notify
	if !n.Configured() {
		return errors.New("notify.receivers: at least one receiver (and notify.route.receiver) is required by notify")
	}
	if len(cfg.Kafka.Brokers) == 0 {
		return errors.New("kafka.brokers: required by notify")
	}
	srv := obs.New(log)
	reg := srv.Registry
	srv.SetReady("notify", errors.New("starting"))

	esClient, err := elasticsearch.NewClient(cfg.Sink.Elasticsearch)
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	store, err := notify.NewESSilences(ctx, esClient, n.Silences.Index)
	if err != nil {
		return fmt.Errorf("notify: silences: %w", err)
	}
	silencer := notify.NewSilencer(store, n.Silences.RefreshInterval, log)
	// Fail closed: delivering before the silences are known would send
	// what someone silenced.
	if err := silencer.Refresh(ctx); err != nil {
		return fmt.Errorf("notify: reading silences: %w", err)
	}
	route, err := notify.NewRoute(&n.Route)
	if err != nil {
		return err
	}
	inhibitor, err := notify.NewInhibitor(n.InhibitRules)
	if err != nil {
		return err
	}
	receivers, err := buildReceivers(n)
	if err != nil {
		return err
	}
	metrics, err := notify.NewMetrics(reg)
	if err != nil {
		return err
	}
	states, err := notify.NewESStates(esClient, cfg.Sink.Elasticsearch.AlertsIndex, 100000, time.Second, log, reg)
	if err != nil {
		return err
	}
	d, err := notify.New(notify.Options{
		Route: route, Receivers: receivers, Silences: silencer, Inhibitor: inhibitor, States: states,
		MaxGroups: n.MaxGroups, MaxAlertsPerGroup: n.MaxAlertsPerGroup, QueueSize: n.QueueSize,
		Backoff:     backoff.Policy{Initial: n.Retry.InitialBackoff, Max: n.Retry.MaxBackoff},
		GiveUpAfter: n.Retry.GiveUpAfter, Log: log, Metrics: metrics,
	})
	if err != nil {
		return err
	}
	dialer, err := kafkaopts.Dialer(cfg.Kafka)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	transport, err := kafkaopts.Transport(cfg.Kafka)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	dlq := &kafka.Writer{Addr: kafka.TCP(cfg.Kafka.Brokers...), Transport: transport, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 10 * time.Millisecond, WriteTimeout: 10 * time.Second}
	defer dlq.Close()
	consumer, err := pipeline.NewNotifyConsumer(pipeline.NotifyConsumerOptions{
		Brokers: cfg.Kafka.Brokers, Dialer: dialer, Topic: cfg.Kafka.Topics.Alerts, GroupID: n.ConsumerGroup,
		DLQ: pipeline.NotifyDLQWriter(dlq, cfg.Kafka.Topics.DLQ), Dispatcher: d, Log: log, Registerer: reg,
	})
	if err != nil {
		return err
	}

	// Bind the silence API before anything runs, so a taken port fails
	// the start cleanly.
	var api http.Handler
	var ln net.Listener
	var apiTLS *tls.Config
	apiLimits := obs.SilenceAPILimits
	if a := n.Silences.API; a.Listen != "" {
		if api, err = notify.NewSilenceAPI(silencer, string(a.Token), log, reg); err != nil {
			return err
		}
		if a.TLS() {
			// Re-read when renewed, as the audit webhook's certificate is.
			cert, err := tlsfiles.Load(a.TLSCertFile, a.TLSKeyFile, tlsfiles.Options{
				Field: "notify.silences.api.tls_cert_file/tls_key_file", Log: log})
			if err != nil {
				return err
			}
			if err := obs.Register(reg, cert.Collectors("silence-api")...); err != nil {
				return err
			}
			apiTLS = &tls.Config{GetCertificate: cert.GetCertificate, MinVersion: tls.VersionTLS12}
		} else if !loopbackOnly(a.Listen) {
			// The bearer token authorises muting alerts: on a network it
			// belongs inside TLS. Not refused (a sidecar or mesh may add
			// TLS), but said.
			log.Warn("silence API serves plain HTTP on a non-loopback address: its bearer token crosses the network in clear text; set notify.silences.api.tls_cert_file and tls_key_file", "listen", a.Listen)
		}
		if ln, err = net.Listen("tcp", a.Listen); err != nil {
			return fmt.Errorf("notify.silences.api.listen: %w", err)
		}
		defer ln.Close()
		apiLimits = apiLimits.WithMax(a.MaxConnections)
		if ln, err = apiLimits.Wrap(ln, "silence-api", reg, log); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	goRun := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	if cfg.Server.Listen != "" {
		goRun(func() {
			if err := srv.Run(ctx, cfg.Server); err != nil {
				log.Error("metrics server", "err", err)
				cancel()
			}
		})
	}
	if ln != nil {
		hs := apiLimits.Server(api)
		hs.TLSConfig = apiTLS
		goRun(func() {
			if apiTLS != nil {
				_ = hs.ServeTLS(ln, "", "")
				return
			}
			_ = hs.Serve(ln)
		})
		goRun(func() {
			<-ctx.Done()
			sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
			defer c()
			_ = hs.Shutdown(sctx)
		})
		log.Info("silence API listening", "addr", ln.Addr().String(), "tls", apiTLS != nil)
	}
	if dm := n.Deadman; dm.Enabled {
		sev, err := rules.ParseSeverity(dm.Severity)
		if err != nil {
			return fmt.Errorf("notify.deadman.severity: %w", err)
		}
		es := cfg.Sink.Elasticsearch
		m := &notify.Deadman{
			Seen:      notify.ESLastSeen(esClient, []string{es.Streams.Audit, es.Streams.Events}),
			Threshold: dm.Threshold, Clusters: dm.Clusters, Severity: sev, Dispatcher: d, Log: log,
		}
		goRun(func() { m.Run(ctx, dm.CheckInterval) })
	}
	goRun(func() { silencer.Run(ctx) })
	goRun(func() { states.Run(ctx) })
	goRun(func() { _ = d.Run(ctx) })
	srv.SetReady("notify", nil)
	log.Info("notifier starting", "group", n.ConsumerGroup, "topic", cfg.Kafka.Topics.Alerts, "receivers", len(receivers))
	err = consumer.Run(ctx)
	cancel()
	wg.Wait()
	log.Info("notifier stopped")
	return err
}

// loopbackOnly reports whether listen (host:port) accepts connections from
// this host only.
func loopbackOnly(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
