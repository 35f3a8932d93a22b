package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules/rbacusage"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

func newRBACCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "rbac",
		Short:   "Least privilege from real usage: which bindings allowed which requests",
		Example: `  kubesift rbac usage --cluster prod --since 90d`,
	}
	cmd.AddCommand(newRBACUsageCommand(g))
	return cmd
}

// rbacUsageFlags are the options of `kubesift rbac usage`.
type rbacUsageFlags struct {
	cluster string
	since   string
	es      string
	output  outputFormat
}

func newRBACUsageCommand(g *globalFlags) *cobra.Command {
	f := &rbacUsageFlags{}
	cmd := &cobra.Command{
		Use:   "usage [--cluster C] [--since 90d] [-o table|json|yaml]",
		Short: "Per binding: last use, the verbs and resources used, and a narrower role that allows exactly them",
		Long: `usage reads the RBAC usage index the posture consumer keeps
(sink.elasticsearch.findings.usage_index; processor.posture.rbac_usage) and prints, per
binding that allowed a request since kubesift began watching: its role and subjects, its last
use, the verb/resource pairs used within --since, and the narrowest role that allows exactly
those. -o yaml prints the suggested roles as a YAML stream kubectl apply takes. docs/posture.md
("RBAC usage") describes the data.`,
		Example: `  kubesift rbac usage -c processor.yaml
  kubesift rbac usage --cluster prod --since 30d -o yaml > narrower-roles.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := g.load(cmd)
			if err != nil {
				return err
			}
			return f.run(cmd, cfg)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.cluster, "cluster", "", "only this cluster (default: every cluster in the index)")
	fl.StringVar(&f.since, "since", "90d", "the period whose use is listed and suggested: a duration, or days as 90d")
	fl.StringVar(&f.es, "es", "", "Elasticsearch URL (replaces sink.elasticsearch.addresses; auth and TLS from the configuration)")
	f.output.bind(cmd, "table", "json", "yaml")
	return cmd
}

// parseSince reads a --since value: a Go duration or a whole number of
// days ("90d").
func parseSince(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%q is not a positive number of days", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is neither a positive duration nor a number of days (90d)", s)
	}
	return d, nil
}

func (f *rbacUsageFlags) run(cmd *cobra.Command, cfg *config.Config) error {
	since, err := parseSince(f.since)
	if err != nil {
		return usageError(cmd, fmt.Errorf("rbac usage: --since: %w", err))
	}
	esCfg, err := esConfigWith(cfg, f.es, "rbac usage")
	if err != nil {
		return err
	}
	if esCfg.Findings.UsageIndex == "" {
		return errors.New("rbac usage: sink.elasticsearch.findings.usage_index is empty: no usage is kept")
	}
	client, err := elasticsearch.NewClient(esCfg)
	if err != nil {
		return err
	}
	store := elasticsearch.NewUsageStore(client, esCfg.Findings.UsageIndex, esCfg.Streams.Audit)
	clusters := []string{f.cluster}
	if f.cluster == "" {
		if clusters, err = store.Clusters(cmd.Context()); err != nil {
			return err
		}
	}
	from := time.Now().Add(-since)
	reports := []rbacusage.BindingReport{}
	for _, cl := range clusters {
		snap, err := store.Load(cmd.Context(), cl)
		if err != nil {
			return err
		}
		reports = append(reports, rbacusage.Report(cl, snap, from)...)
	}
	w := cmd.OutOrStdout()
	switch f.output.value {
	case "json":
		return writeJSON(w, reports)
	case "yaml":
		return writeSuggestedRoles(w, reports)
	}
	return writeUsageTable(w, reports)
}

func writeUsageTable(w io.Writer, reports []rbacusage.BindingReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tBINDING\tROLE\tSUBJECTS\tLAST USED\tUSED\tSUGGESTED ROLE")
	for _, r := range reports {
		subjects := make([]string, len(r.Subjects))
		for i, s := range r.Subjects {
			subjects[i] = s.String()
		}
		used, suggested := strings.Join(r.Used, ", "), "-"
		if used == "" {
			used = "(nothing in the period)"
		}
		if r.Suggested != nil {
			suggested = r.Suggested.Kind + " " + r.Suggested.Name
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Cluster, r.Binding, r.Role, strings.Join(subjects, ","),
			r.LastUsed.UTC().Format(time.RFC3339), used, suggested)
	}
	return tw.Flush()
}

// writeSuggestedRoles prints each suggested role as one document of a YAML
// stream, under a comment naming the binding it would replace the role of.
func writeSuggestedRoles(w io.Writer, reports []rbacusage.BindingReport) error {
	for _, r := range reports {
		if r.Suggested == nil {
			continue
		}
		// Through JSON, so the fields carry the API's names.
		b, err := json.Marshal(r.Suggested.Object())
		if err != nil {
			return fmt.Errorf("rbac usage: %w", err)
		}
		var obj map[string]any
		if err := json.Unmarshal(b, &obj); err != nil {
			return fmt.Errorf("rbac usage: %w", err)
		}
		if md, _ := obj["metadata"].(map[string]any); md != nil {
			delete(md, "creationTimestamp")
		}
		y, err := yaml.Marshal(obj)
		if err != nil {
			return fmt.Errorf("rbac usage: %w", err)
		}
		note := fmt.Sprintf("cluster %s: %s (%s) used only %s", r.Cluster, r.Binding, r.Role, strings.Join(r.Used, ", "))
		fmt.Fprintf(w, "---\n# %s\n%s", strings.NewReplacer("\n", " ", "\r", " ").Replace(note), y)
	}
	return nil
}
