package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/kafkatopics"
	"github.com/kubesift/kubesift/internal/lifecycle"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/pipeline"
)

func newProcessCommand(g *globalFlags) *cobra.Command {
	var (
		setup     bool
		ruleDirs  []string
		noBuiltin bool
		posture   bool
	)
	cmd := &cobra.Command{
		Use:   "process",
		Short: "Run the processor: consume records from Kafka, evaluate the rules, index records and alerts in Elasticsearch",
		Long: `process joins the Kafka consumer group processor.group_id on the audit and Events topics
(processor.topics), decodes every record, evaluates the rules (the built-in pack and
processor.rules.dirs, reloaded on change) in partition order, writes every record and alert
to Elasticsearch (sink.elasticsearch) and every alert to the alerts topic (kafka.topics.alerts,
keyed <cluster>/<rule_id>). Records that cannot be decoded or indexed go to the dead-letter
topic (kafka.topics.dlq) with the stage and reason. A Kafka offset is committed only once
everything made from its message is written; run as many processors as the topics have
partitions to scale out. --setup installs the Elasticsearch templates, data streams and
alerts index first (as "kubesift setup es" does). With processor.posture.enabled (or
--posture) a second consumer group (processor.posture.group_id) reads the objects topic
(kafka.topics.objects), keeps each cluster's inventory, writes finding states, transitions
and scores (sink.elasticsearch.findings) and raises an alert for every newly failing finding
at or above processor.posture.alert_severity. /metrics, /healthz and /readyz are served
on server.listen. SIGINT/SIGTERM stop fetching, drain in-flight records, commit and exit.`,
		Example: `  # the processor as deployed (see config print-defaults for every key)
  kubesift process -c /etc/kubesift/processor.yaml
  # install the Elasticsearch templates and data streams first, with extra rules:
  kubesift process -c processor.yaml --setup --rules /etc/kubesift/rules.d
  # processor.yaml:
  #   kafka: {brokers: ["kafka-0:9092"]}
  #   sink: {elasticsearch: {addresses: ["https://es:9200"], api_key_file: /run/secrets/es-key}}
  #   processor: {group_id: kubesift-processor}`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{annotationListens: "server.listen"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.load(cmd)
			if err != nil {
				return err
			}
			cfg.Processor.Rules.Dirs = append(cfg.Processor.Rules.Dirs, ruleDirs...)
			if noBuiltin {
				cfg.Processor.Rules.NoBuiltin = true
			}
			if posture {
				cfg.Processor.Posture.Enabled = true
			}
			return runProcess(cmd.Context(), cfg, setup, log)
		},
	}
	cmd.Flags().BoolVar(&setup, "setup", false, "install the Elasticsearch templates, data streams and alerts index before consuming")
	cmd.Flags().StringArrayVar(&ruleDirs, "rules", nil, "rule directory or file layered over the built-in pack (repeatable; added to processor.rules.dirs)")
	cmd.Flags().BoolVar(&noBuiltin, "no-builtin", false, "do not load the built-in rule pack")
	cmd.Flags().BoolVar(&posture, "posture", false, "also run the posture consumer on the objects topic (sets processor.posture.enabled)")
	return cmd
}

// runProcess builds the processor (pipeline.NewProcessor) and runs it with
// the metrics server until ctx ends.
func runProcess(ctx context.Context, cfg *config.Config, setup bool, log *slog.Logger) error {
	if len(cfg.Kafka.Brokers) == 0 {
		return errors.New("kafka.brokers: required by process")
	}
	srv := obs.New(log)
	srv.SetReady("processor", errors.New("starting"))
	g := lifecycle.New(log)
	addMetricsServer(g, srv, cfg.Server)
	addTopicWatch(g, srv, cfg, log, kafkatopics.ProcessorTopics(cfg))
	if err := addLagMonitor(g, cfg, pipeline.ConsumerGroups(cfg, true, false), srv.Registry, log); err != nil {
		return fmt.Errorf("process: %w", err)
	}
	p, err := pipeline.NewProcessor(ctx, cfg, pipeline.ProcessorDeps{
		Registerer: srv.Registry, Logger: log, SetupStore: setup,
		Ready: func(err error) { srv.SetReady("processor", err) },
	})
	if err != nil {
		return fmt.Errorf("process: %w", err)
	}
	p.Add(g)
	if err := g.Run(ctx); err != nil {
		return fmt.Errorf("process: %w", err)
	}
	return nil
}

// annotationListens is the annotation of a command that runs until it is
// stopped, naming the configuration fields of the addresses it listens on
// (comma-separated). TestServingCommandsFailOnTakenAddress starts every
// such command with each address taken and expects a non-zero exit.
const annotationListens = "kubesift.listens"

// addMetricsServer adds the /metrics, /healthz and /readyz server to g
// when server.listen is set, as a service: an address it cannot bind ends
// the command with an error naming it. Commands add it first, so it stops
// last and answers probes while the rest shuts down.
func addMetricsServer(g *lifecycle.Group, srv *obs.Server, c config.ServerConfig) {
	if c.Listen != "" {
		g.AddService("metrics server", func(ctx context.Context) error { return srv.Run(ctx, c) })
	}
}

// addLagMonitor adds the consumer-lag monitor of groups to g (after the
// metrics server, so it is read to the end) unless kafka.lag_interval is
// 0.
func addLagMonitor(g *lifecycle.Group, cfg *config.Config, groups []pipeline.GroupTopics, reg prometheus.Registerer, log *slog.Logger) error {
	if cfg.Kafka.LagInterval <= 0 || len(groups) == 0 {
		return nil
	}
	m, err := pipeline.NewLagMonitor(cfg.Kafka, groups, cfg.Kafka.LagInterval, reg, log)
	if err != nil {
		return err
	}
	g.AddService("consumer lag", m.Run)
	return nil
}
