package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

func newSetupCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Install what kubesift needs in its stores",
		Example: `  kubesift setup es -c /etc/kubesift/processor.yaml
  kubesift setup kafka -c /etc/kubesift/processor.yaml
  kubesift setup kibana -c /etc/kubesift/processor.yaml --url https://kibana.example:5601
  kubesift setup all -c /etc/kubesift/processor.yaml`,
	}
	var timeout time.Duration
	es := &cobra.Command{
		Use:   "es",
		Short: "Install Elasticsearch templates, data streams, the alerts index and the ILM policy (idempotent)",
		Long: `setup es installs, from sink.elasticsearch in the configuration:
  - the component templates with kubesift's mappings (kubesift-*@mappings);
  - one index template (priority 250, data_stream: {}) and the data stream itself for
    each of sink.elasticsearch.streams.audit, .events and .posture;
  - the alerts index sink.elasticsearch.alerts_index (a plain index) and its template;
  - the ILM policy sink.elasticsearch.ilm.policy, where the cluster has ILM (without it,
    one warning is logged and setup goes on).
Running it again changes nothing; after an upgrade it updates templates and the current
write index's mapping. Any refused request fails the command, naming what was refused.
docs/elasticsearch.md describes the mapping.`,
		Example: `  kubesift setup es -c /etc/kubesift/processor.yaml
  # write audit records where Elastic Security's prebuilt Kubernetes rules look:
  #   sink:
  #     elasticsearch:
  #       addresses: ["https://es.example:9200"]
  #       api_key_file: /etc/kubesift/es-api-key
  #       ca_file: /etc/kubesift/es-ca.pem
  #       streams: {audit: logs-kubernetes.audit_logs-prod}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.load(cmd)
			if err != nil {
				return err
			}
			return setupES(cmd, cfg, log, timeout)
		},
	}
	es.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long")
	cmd.AddCommand(es, newSetupKafkaCommand(g), newSetupKibanaCommand(g), newSetupAllCommand(g))
	return cmd
}

// setupES is `setup es`: elasticsearch.Setup within timeout, and one line
// saying what was set up.
func setupES(cmd *cobra.Command, cfg *config.Config, log *slog.Logger, timeout time.Duration) error {
	esCfg := cfg.Sink.Elasticsearch
	client, err := elasticsearch.NewClient(esCfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	if err := elasticsearch.Setup(ctx, client, esCfg, log); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "elasticsearch: set up %s, %s, %s and %s\n",
		esCfg.Streams.Audit, esCfg.Streams.Events, esCfg.Streams.Posture, esCfg.AlertsIndex)
	return nil
}
