package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/kafkatopics"
	"github.com/kubesift/kubesift/internal/lifecycle"
	"github.com/kubesift/kubesift/internal/obs"
)

// kafkaFlags are the flags of `setup kafka`, which `setup all` takes too.
type kafkaFlags struct {
	opts       kafkatopics.Options
	allowDrift bool
}

func (k *kafkaFlags) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&k.opts.ApplyDrift, "apply-drift", false, "alter retention.ms, min.insync.replicas and a too small max.message.bytes of existing topics to the configured values")
	f.BoolVar(&k.opts.GrowPartitions, "grow-partitions", false, "add partitions to existing topics with fewer than configured (moves keys; never the objects topic)")
	f.BoolVar(&k.allowDrift, "allow-drift", false, "exit 0 even when existing topics differ from the configuration")
}

func newSetupKafkaCommand(g *globalFlags) *cobra.Command {
	var (
		k       kafkaFlags
		output  outputFormat
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "kafka",
		Short: "Create kubesift's Kafka topics, or check existing ones against the configuration (idempotent)",
		Long: `setup kafka creates the five topics of kafka.topics (audit, events, objects, alerts, dlq)
that do not exist, with the settings of kafka.topic_settings: partitions, replication factor,
min.insync.replicas, retention.ms, a max.message.bytes that takes every batch the collector
and the processor send, and cleanup.policy=compact on the objects topic (delete on the others).
An existing topic is compared with the same settings; a difference is reported and left as it
is, unless --apply-drift (retention.ms, min.insync.replicas, a too small max.message.bytes) or
--grow-partitions (fewer partitions than configured; not the objects topic) says to change it.
cleanup.policy and the replication factor are never changed. Running it again changes nothing
and says so. It exits 1 while a difference remains, unless --allow-drift. It connects with the
kafka section's TLS and SASL settings. docs/deployment.md describes the topics.`,
		Example: `  kubesift setup kafka -c /etc/kubesift/collector.yaml
  # a single-broker Kafka:
  #   kafka:
  #     brokers: ["localhost:9092"]
  #     topic_settings: {partitions: 3, replication_factor: 1}
  kubesift setup kafka -c kubesift.yaml --apply-drift -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := g.load(cmd)
			if err != nil {
				return err
			}
			return k.run(cmd, cfg, output.json(), timeout)
		},
	}
	k.flags(cmd)
	output.bind(cmd, "text")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "give up after this long")
	return cmd
}

// run is `setup kafka`: Setup within timeout, the report on stdout, and an
// error when drift remains that --allow-drift does not accept.
func (k *kafkaFlags) run(cmd *cobra.Command, cfg *config.Config, asJSON bool, timeout time.Duration) error {
	a, err := kafkatopics.NewAdmin(cfg.Kafka, timeout)
	if err != nil {
		return fmt.Errorf("setup kafka: %w", err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	rep, err := a.Setup(ctx, kafkatopics.Specs(cfg), k.opts)
	out := cmd.OutOrStdout()
	if asJSON {
		if jerr := writeJSON(out, struct {
			kafkatopics.Report
			Changed    bool `json:"changed"`
			Unresolved int  `json:"unresolved"`
		}{rep, rep.Changed(), rep.Unresolved()}); jerr != nil {
			return jerr
		}
	} else {
		printKafkaReport(out, rep)
	}
	if err != nil {
		return fmt.Errorf("setup kafka: %w", err)
	}
	if n := rep.Unresolved(); n > 0 && !k.allowDrift {
		return fmt.Errorf("setup kafka: %d settings of existing topics differ from the configuration (listed above): "+
			"apply the safe ones with --apply-drift or --grow-partitions, change the others by hand, or accept them with --allow-drift", n)
	}
	return nil
}

// printKafkaReport writes one line per topic, one per drift, and a summary.
func printKafkaReport(w io.Writer, rep kafkatopics.Report) {
	count := map[string]int{}
	for _, t := range rep.Topics {
		count[t.Action]++
		fmt.Fprintf(w, "kafka: topic %s (%s): %s", t.Name, t.Role, t.Action)
		if t.Action == kafkatopics.ActionCreated {
			fmt.Fprintf(w, " with %d partitions, replication factor %d, %s", t.Partitions, t.ReplicationFactor, configList(t.Configs))
		}
		fmt.Fprintln(w)
		for _, d := range t.Drift {
			fmt.Fprintf(w, "  %s is %s, configured %s: ", d.Setting, orNone(d.Have), d.Want)
			switch d.Fix {
			case kafkatopics.FixApplied:
				fmt.Fprintf(w, "changed to %s", d.Want)
			case kafkatopics.FixManual:
				fmt.Fprintf(w, "left as it is (%s)", d.Hint)
			default:
				fmt.Fprintf(w, "left as it is; %s changes it", d.Fix)
				if d.Hint != "" {
					fmt.Fprintf(w, " (%s)", d.Hint)
				}
			}
			fmt.Fprintln(w)
		}
	}
	if !rep.Changed() && rep.Unresolved() == 0 {
		fmt.Fprintf(w, "kafka: nothing to change: the %d topics exist with the configured settings\n", len(rep.Topics))
		return
	}
	fmt.Fprintf(w, "kafka: %d created, %d changed, %d unchanged, %d with differences left\n",
		count[kafkatopics.ActionCreated], count[kafkatopics.ActionChanged], count[kafkatopics.ActionUnchanged], count[kafkatopics.ActionDrift])
}

func configList(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, " ")
}

func orNone(s string) string {
	if s == "" {
		return "unset"
	}
	return s
}

func newSetupAllCommand(g *globalFlags) *cobra.Command {
	var (
		kf      kafkaFlags
		kib     kibanaFlags
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "all",
		Short: "Run setup es, setup kafka and, with --kibana-url, setup kibana, in that order",
		Long: `setup all runs "setup es", then "setup kafka", then — only when --kibana-url is given —
"setup kibana", with one configuration, stopping at the first that fails. Each step is
idempotent, so it can run at every deployment. The kafka flags are those of "setup kafka";
the kibana flags those of "setup kibana" with a kibana- prefix.`,
		Example: `  kubesift setup all -c /etc/kubesift/kubesift.yaml
  kubesift setup all -c kubesift.yaml --kibana-url http://localhost:5601`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.load(cmd)
			if err != nil {
				return err
			}
			if err := setupES(cmd, cfg, log, timeout); err != nil {
				return err
			}
			if err := kf.run(cmd, cfg, false, timeout); err != nil {
				return err
			}
			if kib.opts.URL == "" {
				fmt.Fprintln(cmd.OutOrStdout(), "kibana: skipped (no --kibana-url)")
				return nil
			}
			return kib.run(cmd, cfg, log, timeout)
		},
	}
	kf.flags(cmd)
	kib.flags(cmd, "kibana-")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up on each step after this long")
	return cmd
}

// addTopicWatch adds to g the check that a component's Kafka topics exist
// (kafkatopics.Watch): /readyz names the missing ones and the log says once
// how to create them, while the component runs on. Without brokers there is
// nothing to check (the command refuses to start anyway, or a test runs
// with an in-memory publisher).
func addTopicWatch(g *lifecycle.Group, srv *obs.Server, cfg *config.Config, log *slog.Logger, topics []string) {
	if len(cfg.Kafka.Brokers) == 0 {
		return
	}
	g.AddService("kafka topics check", kafkatopics.Watch{Kafka: cfg.Kafka, Topics: topics, SetReady: srv.SetReady, Log: log}.Run)
}
