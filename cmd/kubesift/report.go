package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/kubesift/kubesift/internal/atomicfile"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/pipeline"
	"github.com/kubesift/kubesift/sink/elasticsearch"
	"github.com/kubesift/kubesift/sink/report"
)

// reportOptions are the flags of `kubesift report`.
type reportOptions struct {
	from     string
	es       string
	since    time.Duration
	out      string
	digest   bool
	clusters []string
	until    string
	kafka    string
}

func newReportCommand(g *globalFlags) *cobra.Command {
	o := &reportOptions{}
	cmd := &cobra.Command{
		Use:   "report (--from DIR | --es URL) [--since 24h] [-o FILE] | report --digest --es URL [--kafka BROKERS] [--since 24h] [--until TIME] [--cluster C] [-o text|json|html]",
		Short: "Write report.html: alerts, rules, actors, Events and posture on one self-contained page",
		Long: `report builds one self-contained HTML page (inline CSS and SVG, no script, nothing fetched)
from an NDJSON output folder of kubesift run (--from) or from Elasticsearch (--es, with the
authentication and TLS of sink.elasticsearch in the configuration): the alerts timeline by
severity, the top rules with their MITRE ATT&CK tactics, the top actors, Events by reason, the
posture score and failing checks, and the highest-severity alerts. docs/report.md describes it.

With --digest it prints instead, per cluster, what the daily digest sends (notify.digest): the
posture score and its change, findings opened and resolved, unused bindings, top alerts by rule,
Event warnings by reason, and records indexed, over --since (default 24h) before --until (default
now); -o names the format. With --kafka it also counts the records and alerts dead-lettered in the
period (kafka.topics.dlq), which never reached Elasticsearch.`,
		Example: `  kubesift report --from kubesift-out -o report.html
  kubesift report --es https://es.example:9200 -c processor.yaml --since 24h -o report.html
  kubesift report --digest --es https://es.example:9200 -c notify.yaml --cluster prod -o json
  kubesift report --digest --es https://es.example:9200 -c notify.yaml --until 2026-12-07T08:00:00+01:00
  kubesift report --digest --es https://es.example:9200 --kafka kafka-0.example:9093 -c notify.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := g.load(cmd)
			if err != nil {
				return err
			}
			return o.run(cmd, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.from, "from", "", "NDJSON output folder of kubesift run")
	f.StringVar(&o.es, "es", "", "Elasticsearch URL (replaces sink.elasticsearch.addresses; auth and TLS from the configuration)")
	f.DurationVar(&o.since, "since", 0, "only documents of this long before now (0: all)")
	f.StringVarP(&o.out, "output", "o", "report.html", "file to write (with --digest: the format printed, text, json or html)")
	f.BoolVar(&o.digest, "digest", false, "print the digest per cluster instead of writing the page (needs --es)")
	f.StringArrayVar(&o.clusters, "cluster", nil, "with --digest: this cluster only (repeatable; default every cluster with documents)")
	f.StringVar(&o.until, "until", "", "with --digest: the end of the period, RFC 3339 (default now)")
	f.StringVar(&o.kafka, "kafka", "", "with --digest: Kafka brokers, comma-separated (replaces kafka.brokers; TLS and SASL from the configuration), to count the dead letters")
	return cmd
}

func (o *reportOptions) run(cmd *cobra.Command, cfg *config.Config) error {
	if o.digest {
		return o.runDigest(cmd, cfg)
	}
	if len(o.clusters) > 0 || o.until != "" || o.kafka != "" {
		return usageError(cmd, errors.New("report: --cluster, --until and --kafka are for --digest"))
	}
	if (o.from == "") == (o.es == "") {
		return usageError(cmd, errors.New("report: give exactly one of --from DIR and --es URL"))
	}
	if o.since < 0 {
		return usageError(cmd, fmt.Errorf("report: --since: %s is negative", o.since))
	}
	esCfg, err := esConfigWith(cfg, o.es, "report")
	if err != nil {
		return err
	}
	src, err := newReportSource(esCfg, o.from, nil)
	if err != nil {
		return err
	}
	var w report.Window
	if o.since > 0 {
		w.From = time.Now().Add(-o.since)
	}
	s, err := src.Summary(cmd.Context(), w)
	if err != nil {
		return err
	}
	if err := writeReport(o.out, s); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "report: %s (%d alerts, %d audit records, %d Events)\n", o.out, s.Alerts, s.AuditRecords, s.Events)
	return nil
}

// esConfigWith is sink.elasticsearch with es, a command's --es, as its
// address when given; command names the command in the error.
func esConfigWith(cfg *config.Config, es, command string) (config.ElasticsearchConfig, error) {
	esCfg := cfg.Sink.Elasticsearch
	if es != "" {
		if u, err := url.Parse(es); err != nil || u.Host == "" {
			return esCfg, fmt.Errorf("%s: --es: %q is not a URL", command, redactURL(es))
		}
		esCfg.Addresses = []string{es}
	}
	return esCfg, nil
}

// runDigest prints the digests of the last --since (24h unless given).
func (o *reportOptions) runDigest(cmd *cobra.Command, cfg *config.Config) error {
	format := report.DigestText
	if cmd.Flags().Changed("output") {
		format = o.out
	}
	switch {
	case o.es == "" || o.from != "":
		return usageError(cmd, errors.New("report: --digest reads Elasticsearch: give --es URL (not --from)"))
	case format != report.DigestText && format != report.DigestJSON && format != report.DigestHTML:
		return usageError(cmd, fmt.Errorf("report: --digest -o: %q is not text, json or html", format))
	case o.since < 0:
		return usageError(cmd, fmt.Errorf("report: --since: %s is negative", o.since))
	}
	since := o.since
	if !cmd.Flags().Changed("since") {
		since = 24 * time.Hour
	}
	w := report.Window{To: time.Now()}
	if o.until != "" {
		var err error
		if w.To, err = time.Parse(time.RFC3339, o.until); err != nil {
			return usageError(cmd, fmt.Errorf("report: --until: %q is not an RFC 3339 time", o.until))
		}
	}
	loc, err := cfg.Notify.Digest.Location()
	if err != nil {
		return fmt.Errorf("report: notify.digest.timezone: %w", err)
	}
	esCfg, err := esConfigWith(cfg, o.es, "report")
	if err != nil {
		return err
	}
	src, err := newReportSource(esCfg, "", nil)
	if err != nil {
		return err
	}
	if since > 0 {
		w.From = w.To.Add(-since)
	}
	ds, leftOut, err := src.(*report.ES).Digests(cmd.Context(), o.clusters, w)
	if err != nil {
		return err
	}
	if leftOut > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "report: %d more clusters not shown; name them with --cluster\n", leftOut)
	}
	if o.kafka != "" {
		k := cfg.Kafka
		k.Brokers = strings.Split(o.kafka, ",")
		c, err := pipeline.NewDeadLetterCounter(k)
		if err != nil {
			return err
		}
		if err := c.AddTo(cmd.Context(), ds, w); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	return report.RenderDigests(cmd.OutOrStdout(), ds, format, loc)
}

// newReportSource is the source of the NDJSON folder dir, or with dir
// empty of the Elasticsearch cluster at esCfg's first address.
func newReportSource(esCfg config.ElasticsearchConfig, dir string, reg prometheus.Registerer) (report.Source, error) {
	indices := report.IndicesFrom(esCfg)
	if dir != "" {
		d, err := report.NewDir(dir, indices, reg)
		if err != nil {
			return nil, err
		}
		return d, nil
	}
	client, err := elasticsearch.NewClient(esCfg)
	if err != nil {
		return nil, err
	}
	addr := "elasticsearch"
	if len(esCfg.Addresses) > 0 {
		addr = redactURL(esCfg.Addresses[0])
	}
	// The page names the address, never credentials in it.
	return report.NewES(client, addr, indices), nil
}

// writeReport renders s into path, replacing the file whole.
func writeReport(path string, s *report.Summary) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	var b bytes.Buffer
	if err := report.Render(&b, s, report.Options{}); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, b.Bytes()); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// writeRunReport writes <out>/report.html at the end of `kubesift run`,
// from the NDJSON files or, with Elasticsearch, from the whole store, and
// prints its path. A report that cannot be written is said, not a failure
// of the run: the documents are written.
func (a *allInOne) writeRunReport() {
	path := filepath.Join(a.o.out, "report.html")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := func() error {
		dir := ""
		if a.files != nil {
			dir = a.o.out
		}
		src, err := newReportSource(a.cfg.Sink.Elasticsearch, dir, a.srv.Registry)
		if err != nil {
			return err
		}
		if es, ok := src.(*report.ES); ok {
			if err := es.Refresh(ctx); err != nil {
				return err
			}
		}
		s, err := src.Summary(ctx, report.Window{})
		if err != nil {
			return err
		}
		return writeReport(path, s)
	}()
	if err != nil {
		a.log.Warn("report not written", "err", err)
		fmt.Fprintf(a.o.stdout, "%s  not written: %v\n", path, err)
		return
	}
	fmt.Fprintf(a.o.stdout, "%s  report\n", path)
}

// redactURL is addr without the credentials a URL may hold.
func redactURL(addr string) string {
	u, err := url.Parse(addr)
	if err != nil {
		return "(address not shown)"
	}
	u.User = nil
	return u.String()
}
