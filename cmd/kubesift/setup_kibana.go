package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/sink/kibana"
)

// Environment variables read when the secret flags are not given, so a
// secret need not appear in the process list.
const (
	envKibanaAPIKey   = "KUBESIFT_KIBANA_API_KEY"
	envKibanaPassword = "KUBESIFT_KIBANA_PASSWORD"
)

func newSetupKibanaCommand(g *globalFlags) *cobra.Command {
	var (
		k       kibanaFlags
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "kibana",
		Short: "Import kubesift's data views, saved searches and dashboards into Kibana (idempotent)",
		Long: `setup kibana imports, through Kibana's saved-objects import API with overwrite=true:
  - data views for the audit and Events streams, both together, the alerts index, the
    findings index, the finding transitions and posture scores streams and the object
    snapshots stream, named after sink.elasticsearch in the configuration (-c), with
    severity colours and links from alerts and findings to their records in Discover;
  - the dashboards [kubesift] Overview, Audit activity, Events, Detections and Posture,
    their visualizations and saved searches.
Running it again replaces the same objects (their ids are fixed). Without -c the
objects name the default streams, exactly deployments/kibana/kubesift.ndjson.
The API key or password can come from ` + envKibanaAPIKey + ` or ` + envKibanaPassword + `
instead of the flags. docs/kibana.md describes the dashboards.`,
		Example: `  kubesift setup kibana --url http://localhost:5601
  KUBESIFT_KIBANA_API_KEY=$(cat key) kubesift setup kibana -c processor.yaml \
    --url https://kibana.example:5601 --space security --ca-file ca.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.load(cmd)
			if err != nil {
				return err
			}
			return k.run(cmd, cfg, log, timeout)
		},
	}
	k.flags(cmd, "")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long")
	_ = cmd.MarkFlagRequired("url")
	return cmd
}

// kibanaFlags are the flags of `setup kibana`, which `setup all` takes too
// with a "kibana-" prefix.
type kibanaFlags struct {
	opts             kibana.ImportOptions
	apiKey, password string
	file             string
}

func (k *kibanaFlags) flags(cmd *cobra.Command, prefix string) {
	f := cmd.Flags()
	f.StringVar(&k.opts.URL, prefix+"url", "", "Kibana's URL, with its base path if any")
	f.StringVar(&k.opts.Space, prefix+"space", "", "Kibana space to import into (default: the default space)")
	f.StringVar(&k.apiKey, prefix+"api-key", "", "Elasticsearch API key, encoded (or "+envKibanaAPIKey+")")
	f.StringVar(&k.opts.Username, prefix+"username", "", "user for basic authentication")
	f.StringVar(&k.password, prefix+"password", "", "password for basic authentication (or "+envKibanaPassword+")")
	f.StringVar(&k.opts.CAFile, prefix+"ca-file", "", "PEM file of the CA that signed Kibana's certificate")
	f.BoolVar(&k.opts.InsecureSkipVerify, prefix+"insecure-skip-verify", false, "do not verify Kibana's certificate (test setups only)")
	f.StringVar(&k.file, prefix+"file", "", "import this NDJSON file instead of the objects generated for the configuration")
}

// run is `setup kibana`: the import within timeout, and what it imported.
func (k *kibanaFlags) run(cmd *cobra.Command, cfg *config.Config, log *slog.Logger, timeout time.Duration) error {
	opts := k.opts
	opts.APIKey = config.Secret(firstSet(k.apiKey, os.Getenv(envKibanaAPIKey)))
	opts.Password = config.Secret(firstSet(k.password, os.Getenv(envKibanaPassword)))
	ndjson, err := savedObjects(k.file, cfg.Sink.Elasticsearch)
	if err != nil {
		return err
	}
	im, err := kibana.NewImporter(opts)
	if err != nil {
		return err
	}
	im.Log = log
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	res, err := im.Import(ctx, ndjson)
	if err != nil {
		return err
	}
	printImport(cmd, opts.Space, res)
	return nil
}

func firstSet(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// savedObjects is the file's content, or the objects generated for cfg.
func savedObjects(file string, cfg config.ElasticsearchConfig) ([]byte, error) {
	if file == "" {
		return kibana.Generate(cfg)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("setup kibana: --file: %w", err)
	}
	return b, nil
}

func printImport(cmd *cobra.Command, space string, res kibana.ImportResult) {
	if space == "" {
		space = "default"
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "kibana: imported %d saved objects into space %s (%d created, %d replaced)\n",
		len(res.Created)+len(res.Replaced), space, len(res.Created), len(res.Replaced))
	for _, list := range [][]kibana.ImportedObject{res.Created, res.Replaced} {
		for _, o := range list {
			if o.Type == "dashboard" {
				fmt.Fprintf(out, "  dashboard %q (id %s)\n", o.Title, o.ID)
			}
		}
	}
}
