package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubesift/kubesift/collector/objects"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
)

// exitFindings is posture scan's exit code when an open finding reaches
// --fail-on; 1 stays for errors, so a CI gate can tell the two apart.
const exitFindings = 3

func newPostureCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "posture",
		Short: "Judge a cluster's objects with the posture checks (CIS Kubernetes Benchmark and the programme's own)",
		Example: `  kubesift posture scan --kubeconfig ~/.kube/config
  kubesift posture scan -o json --fail-on critical`,
	}
	cmd.AddCommand(newPostureScanCommand())
	return cmd
}

// scanFlags are posture scan's options.
type scanFlags struct {
	ruleFlags
	kubeconfig, context, cluster, output string
	dirs                                 []string
	failOn                               string
}

func newPostureScanCommand() *cobra.Command {
	f := &scanFlags{}
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "scan [--kubeconfig KC] [-o table|json] [--rules DIR]... [--fail-on SEVERITY]",
		Short: "List a cluster's objects once, judge them, print the findings",
		Long: `scan lists every kind the objects source collects (read-only: list on those kinds), builds
the same records the source would publish, judges them with the object rules of the built-in pack
and --rules directories, and prints the open findings: a table grouped by CIS section with passed
and failed verdicts and the score, or one JSON finding per line (-o json). The exit code is 0 when
no finding reaches --fail-on, 3 when one does, 1 on errors.`,
		Example: `  kubesift posture scan --kubeconfig ~/.kube/config
  kubesift posture scan -o json --fail-on critical --rules ./my-rules | jq .check_id`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.output = out.String()
			client, cluster, err := f.client()
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			return f.scan(cmd.Context(), client, cluster, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f.bind(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	fl.StringVar(&f.context, "context", "", "kubeconfig context (default: the current one)")
	fl.StringVar(&f.cluster, "cluster", "", "cluster name in finding ids (default: the context's name)")
	fl.StringArrayVar(&f.dirs, "rules", nil, "rule directory layered over the built-in pack (repeatable)")
	fl.StringVar(&f.failOn, "fail-on", "high", "exit 3 when an open finding has this severity or higher")
	// json is one finding per line.
	out.bind(cmd, "table")
	return cmd
}

// client builds the API client from the kubeconfig and names the cluster.
func (f *scanFlags) client() (kubernetes.Interface, string, error) {
	lr := clientcmd.NewDefaultClientConfigLoadingRules()
	lr.ExplicitPath = f.kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(lr, &clientcmd.ConfigOverrides{CurrentContext: f.context})
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("posture scan: kubeconfig: %w", err)
	}
	rc.UserAgent, rc.QPS, rc.Burst, rc.Timeout = "kubesift-posture-scan", 50, 100, time.Minute
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, "", fmt.Errorf("posture scan: %w", err)
	}
	cluster := f.cluster
	if cluster == "" {
		raw, err := cc.RawConfig()
		if err != nil {
			return nil, "", fmt.Errorf("posture scan: kubeconfig: %w", err)
		}
		cluster = raw.CurrentContext
		if f.context != "" {
			cluster = f.context
		}
	}
	if cluster == "" {
		cluster = "default"
	}
	return client, cluster, nil
}

// scan is posture scan on a client: List, ObjectsFromRecords, Replace, output.
func (f *scanFlags) scan(ctx context.Context, client kubernetes.Interface, cluster string, stdout, stderr io.Writer) error {
	failOn, err := rules.ParseSeverity(f.failOn)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("--fail-on: %w", err)}
	}
	if f.output != "table" && f.output != "json" {
		return &exitError{code: 1, err: fmt.Errorf("-o %q: want table or json", f.output)}
	}
	set, err := rules.Load(rules.LoadOptions{NoBuiltin: f.noBuiltin, Dirs: f.dirs})
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	start := time.Now()
	l, err := objects.List(ctx, client, objects.ListOptions{Cluster: record.Cluster{Name: cluster}})
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("posture scan: %w", err)}
	}
	listed := time.Since(start)
	objs, errs := posture.ObjectsFromRecords(l.Records)
	e := posture.New(set)
	if _, err := e.Replace(cluster, objs); err != nil {
		errs = append(errs, err)
	}
	for _, k := range l.Unserved {
		fmt.Fprintf(stderr, "warning: the API server does not serve %s; not scanned\n", k)
	}
	for _, err := range append(l.Rejected, errs...) {
		fmt.Fprintf(stderr, "warning: not judged: %v\n", err)
	}
	findings := e.Findings(cluster)
	out := bufio.NewWriter(stdout)
	if f.output == "json" {
		err = writeFindingsJSON(out, findings)
	} else {
		total, _ := e.Score(cluster)
		err = writeFindingsTable(out, e.Report(cluster), total)
	}
	if err == nil {
		err = out.Flush()
	}
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("posture scan: write: %w", err)}
	}
	fmt.Fprintf(stderr, "posture scan of %s: %d objects listed in %.2fs, judged in %.2fs, %d open findings\n",
		cluster, len(l.Records), listed.Seconds(), (time.Since(start) - listed).Seconds(), len(findings))
	if n := countAtLeast(findings, failOn); n > 0 {
		return &exitError{code: exitFindings, err: fmt.Errorf("%d open finding(s) at or above %s", n, failOn)}
	}
	return nil
}

func countAtLeast(ds []posture.Decision, sev rules.Severity) int {
	n := 0
	for _, d := range ds {
		if d.Severity >= sev {
			n++
		}
	}
	return n
}

// scanFinding is one line of -o json: the contract's fields, in its order.
type scanFinding struct {
	CheckID     string            `json:"check_id"`
	Title       string            `json:"title"`
	CIS         []string          `json:"cis"`
	CISVersion  string            `json:"cis_version"`
	Severity    rules.Severity    `json:"severity"`
	Object      posture.ObjectRef `json:"object"`
	Message     string            `json:"message"`
	Remediation string            `json:"remediation"`
	Cluster     string            `json:"cluster"`
}

// writeFindingsJSON writes one finding per line, in Findings' order (by
// finding id), so two scans of the same state print the same bytes.
func writeFindingsJSON(w io.Writer, ds []posture.Decision) error {
	enc := json.NewEncoder(w)
	for _, d := range ds {
		cis := d.CIS
		if cis == nil {
			cis = []string{}
		}
		if err := enc.Encode(scanFinding{CheckID: d.CheckID, Title: d.Title, CIS: cis, CISVersion: d.CISVersion,
			Severity: d.Severity, Object: d.Object, Message: d.Message, Remediation: d.Remediation, Cluster: d.Cluster}); err != nil {
			return err
		}
	}
	return nil
}

// writeFindingsTable writes one block per section (its verdict counts, then
// its findings in aligned columns), then the cluster's score.
func writeFindingsTable(w io.Writer, sections []posture.Section, total posture.Score) error {
	for _, s := range sections {
		fmt.Fprintf(w, "%s: %d passed, %d failed\n", strings.TrimSpace(s.ID+" "+s.Title), s.Passed, s.Failed)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, d := range s.Findings {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", d.Severity, d.CheckID, strings.Join(d.CIS, ","), objectName(d.Object), d.Message)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "\nscore %.1f: %d passed, %d failed (weight %d of %d)\n", total.Percent, total.Passed, total.Failed,
		total.PassedWeight, total.Weight)
	return err
}

func objectName(o posture.ObjectRef) string {
	if o.Namespace == "" {
		return o.Kind + " " + o.Name
	}
	return o.Kind + " " + o.Namespace + "/" + o.Name
}
