package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/pipeline"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink/ecs"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

func newProcessCommand(g *globalFlags) *cobra.Command {
	var (
		setup     bool
		ruleDirs  []string
		noBuiltin bool
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
alerts index first (as "kubesift setup es" does). /metrics, /healthz and /readyz are served
on server.listen. SIGINT/SIGTERM stop fetching, drain in-flight records, commit and exit.`,
		Example: `  # the processor as deployed (see config print-defaults for every key)
  kubesift process -c /etc/kubesift/processor.yaml
  # install the Elasticsearch templates and data streams first, with extra rules:
  kubesift process -c processor.yaml --setup --rules /etc/kubesift/rules.d
  # processor.yaml:
  #   kafka: {brokers: ["kafka-0:9092"]}
  #   sink: {elasticsearch: {addresses: ["https://es:9200"], api_key_file: /run/secrets/es-key}}
  #   processor: {group_id: kubesift-processor}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.load(cmd)
			if err != nil {
				return err
			}
			cfg.Processor.Rules.Dirs = append(cfg.Processor.Rules.Dirs, ruleDirs...)
			if noBuiltin {
				cfg.Processor.Rules.NoBuiltin = true
			}
			return runProcess(cmd.Context(), cfg, setup, log)
		},
	}
	cmd.Flags().BoolVar(&setup, "setup", false, "install the Elasticsearch templates, data streams and alerts index before consuming")
	cmd.Flags().StringArrayVar(&ruleDirs, "rules", nil, "rule directory or file layered over the built-in pack (repeatable; added to processor.rules.dirs)")
	cmd.Flags().BoolVar(&noBuiltin, "no-builtin", false, "do not load the built-in rule pack")
	return cmd
}

// runProcess wires the rules engine, the ECS document builder, the
// Elasticsearch writer and the Kafka processor together and runs them until
// ctx ends.
func runProcess(ctx context.Context, cfg *config.Config, setup bool, log *slog.Logger) error {
	if len(cfg.Kafka.Brokers) == 0 {
		return errors.New("kafka.brokers: required by process")
	}
	srv := obs.New(log)
	reg := srv.Registry
	srv.SetReady("processor", errors.New("starting"))

	eng, err := rules.New(rules.LoadOptions{NoBuiltin: cfg.Processor.Rules.NoBuiltin, Dirs: cfg.Processor.Rules.Dirs})
	if err != nil {
		return fmt.Errorf("process: rules: %w", err)
	}
	if err := reg.Register(eng.Collector()); err != nil {
		return fmt.Errorf("process: rules metrics: %w", err)
	}
	log.Info("rules loaded", "rules", len(eng.Set().Rules()), "builtin", !cfg.Processor.Rules.NoBuiltin, "dirs", cfg.Processor.Rules.Dirs)

	docs, err := ecs.New(cfg.Sink.Elasticsearch)
	if err != nil {
		return fmt.Errorf("process: %w", err)
	}
	es, err := elasticsearch.NewClient(cfg.Sink.Elasticsearch)
	if err != nil {
		return fmt.Errorf("process: %w", err)
	}
	if setup {
		if err := elasticsearch.Setup(ctx, es, cfg.Sink.Elasticsearch, log); err != nil {
			return fmt.Errorf("process: setup: %w", err)
		}
		log.Info("elasticsearch setup done")
	}
	w, err := elasticsearch.NewWriter(elasticsearch.WriterOptions{Client: es, Config: cfg.Sink.Elasticsearch, Registerer: reg, Logger: log})
	if err != nil {
		return fmt.Errorf("process: %w", err)
	}
	p, err := pipeline.New(pipeline.Options{
		Kafka: cfg.Kafka, Processor: cfg.Processor, Rules: eng, Documents: docs, Writer: w,
		Registerer: reg, Logger: log,
	})
	if err != nil {
		_ = w.Close(context.Background())
		return fmt.Errorf("process: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if cfg.Server.Listen != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Run(ctx, cfg.Server); err != nil {
				log.Error("metrics server", "err", err)
				cancel()
			}
		}()
	}
	if cfg.Processor.Rules.ReloadInterval > 0 && len(cfg.Processor.Rules.Dirs) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			eng.Watch(ctx, cfg.Processor.Rules.ReloadInterval, log, nil)
		}()
	}
	wg.Add(1)
	go func() {
		// /readyz follows the group membership.
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			srv.SetReady("processor", p.Ready())
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	err = p.Run(ctx)
	cancel()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("process: %w", err)
	}
	return nil
}
