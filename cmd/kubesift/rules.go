package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
)

func newRulesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Lint, test and evaluate detection rules",
		Long: `Rules are YAML files with expr conditions (see rules/README.md). The built-in pack is
embedded in the binary; --rules DIR layers your own directories over it.`,
		Example: `  kubesift rules lint ./my-rules
  kubesift rules test ./my-rules
  kubesift rules list --source object
  kubesift rules eval --rules ./my-rules audit.log`,
	}
	cmd.AddCommand(newRulesLintCommand(), newRulesTestCommand(), newRulesListCommand(), newRulesEvalCommand())
	return cmd
}

// ruleFlags are shared by the rules subcommands.
type ruleFlags struct {
	noBuiltin bool
}

func (f *ruleFlags) bind(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.noBuiltin, "no-builtin", false, "do not load the built-in rule pack")
}

// lintResult is what `rules lint -o json` prints for a set that loaded.
type lintResult struct {
	Rules    int            `json:"rules"`
	BySource map[string]int `json:"by_source"`
}

func newRulesLintCommand() *cobra.Command {
	var (
		f   ruleFlags
		out outputFormat
	)
	cmd := &cobra.Command{
		Use:   "lint [DIR...]",
		Short: "Load and type-check rules; report every problem",
		Example: `  kubesift rules lint                      # the built-in pack
  kubesift rules lint ./my-rules           # the pack with your rules layered on top
  kubesift rules lint --no-builtin ./my-rules
  kubesift rules lint -o json ./my-rules`,
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := rules.Load(rules.LoadOptions{NoBuiltin: f.noBuiltin, Dirs: args})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			res := lintResult{Rules: len(set.Rules()), BySource: map[string]int{"audit": 0, "event": 0, "object": 0}}
			for _, r := range set.Rules() {
				res.BySource[r.Source]++
			}
			if out.json() {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d rules (audit %d, event %d, object %d)\n",
				res.Rules, res.BySource["audit"], res.BySource["event"], res.BySource["object"])
			return nil
		},
	}
	f.bind(cmd)
	out.bind(cmd, "text")
	return cmd
}

// fixtureResult is one fixture in `rules test -o json`.
type fixtureResult struct {
	Rule    string  `json:"rule"`
	Name    string  `json:"name"`
	File    string  `json:"file"`
	Passed  bool    `json:"passed"`
	Detail  string  `json:"detail,omitempty"`
	Seconds float64 `json:"seconds"`
}

// testReport is what `rules test -o json` prints.
type testReport struct {
	Passed   int             `json:"passed"`
	Failed   int             `json:"failed"`
	Fixtures []fixtureResult `json:"fixtures"`
}

func newRulesTestCommand() *cobra.Command {
	var (
		f       ruleFlags
		out     outputFormat
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "test [DIR...]",
		Short: "Run rule fixtures (tests/*.yaml next to the rules) and report like go test",
		Example: `  kubesift rules test                # the built-in pack's fixtures
  kubesift rules test -v ./my-rules  # your rules and their fixtures in ./my-rules/tests
  kubesift rules test -o json ./my-rules | jq '.fixtures[] | select(.passed == false)'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := rules.LoadOptions{NoBuiltin: f.noBuiltin, Dirs: args}
			cases, err := rules.LoadTests(opts)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			start := time.Now()
			results, err := rules.RunTests(opts, cases)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			w := cmd.OutOrStdout()
			rep := testReport{Fixtures: []fixtureResult{}}
			for _, r := range results {
				rep.Fixtures = append(rep.Fixtures, fixtureResult{Rule: r.Rule, Name: r.Name, File: r.File,
					Passed: r.Passed, Detail: r.Detail, Seconds: r.Duration.Seconds()})
				if r.Passed {
					rep.Passed++
				} else {
					rep.Failed++
				}
				switch {
				case out.json():
				case !r.Passed:
					fmt.Fprintf(w, "--- FAIL: %s/%s (%.3fs)\n    %s: %s\n", r.Rule, r.Name, r.Duration.Seconds(), r.File, r.Detail)
				case verbose:
					fmt.Fprintf(w, "--- PASS: %s/%s (%.3fs)\n", r.Rule, r.Name, r.Duration.Seconds())
				}
			}
			switch {
			case out.json():
				if err := writeJSON(w, rep); err != nil {
					return err
				}
			case rep.Failed > 0:
				fmt.Fprintf(w, "FAIL\t%d of %d fixtures failed (%.3fs)\n", rep.Failed, len(results), time.Since(start).Seconds())
			default:
				fmt.Fprintf(w, "ok\t%d fixtures passed (%.3fs)\n", len(results), time.Since(start).Seconds())
			}
			if rep.Failed > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d fixture(s) failed", rep.Failed)}
			}
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "list passing fixtures too")
	out.bind(cmd, "text")
	return cmd
}

// listedRule is one rule of `rules list -o json`.
type listedRule struct {
	ID       string         `json:"id"`
	Title    string         `json:"title"`
	Severity rules.Severity `json:"severity"`
	Source   string         `json:"source"`
	Mitre    rules.Mitre    `json:"mitre"`
	Tags     []string       `json:"tags"`
	CIS      []string       `json:"cis,omitempty"`
	Shadow   bool           `json:"shadow,omitempty"`
}

func newRulesListCommand() *cobra.Command {
	var (
		f      ruleFlags
		out    outputFormat
		source string
	)
	cmd := &cobra.Command{
		Use:   "list [DIR...]",
		Short: "List the rules in force (the built-in pack with DIRs layered on it), by id",
		Example: `  kubesift rules list
  kubesift rules list --source object ./my-rules   # the posture checks
  kubesift rules list -o json | jq -r '.[] | select(.severity == "critical") | .id'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if source != "" && !slices.Contains([]string{"audit", "event", "object"}, source) {
				return usageError(cmd, fmt.Errorf("--source: %q is not one of audit, event, object", source))
			}
			set, err := rules.Load(rules.LoadOptions{NoBuiltin: f.noBuiltin, Dirs: args})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			list := []listedRule{}
			for _, r := range set.Rules() {
				if source != "" && r.Source != source {
					continue
				}
				tags := r.Tags
				if tags == nil {
					tags = []string{}
				}
				list = append(list, listedRule{ID: r.ID, Title: r.Title, Severity: r.Severity, Source: r.Source,
					Mitre: r.Mitre, Tags: tags, CIS: r.CIS, Shadow: r.Shadow})
			}
			sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
			if out.json() {
				return writeJSON(cmd.OutOrStdout(), list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSOURCE\tSEVERITY\tTITLE")
			for _, r := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.ID, r.Source, r.Severity, r.Title)
			}
			return tw.Flush()
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVar(&source, "source", "", "only rules of this source: audit, event or object")
	out.bind(cmd, "table")
	return cmd
}

// evalAlert is the JSON line `rules eval` prints for one alert: the engine's
// Alert, with record_id naming the input object (auditID or Event UID) as
// users search for it, and record keeping the kubesift record id.
type evalAlert struct {
	rules.Alert
	RecordID string `json:"record_id"` // shadows Alert.RecordID
	Record   string `json:"record"`
}

func newRulesEvalCommand() *cobra.Command {
	var (
		f       ruleFlags
		out     outputFormat
		dirs    []string
		cluster string
		summary bool
	)
	cmd := &cobra.Command{
		Use:   "eval [--rules DIR]... FILE...",
		Short: "Evaluate audit events and Kubernetes Events from files; print one JSON alert per line",
		Long: `eval reads audit events and Kubernetes Events in any form the decoders accept (single
JSON, lists, NDJSON audit logs, AKS/GKE wrappers; - for stdin), evaluates them in file order on
their own event time (so stateful rules give the same answers as live), and writes one JSON
alert per line to stdout (-o json, the default), or one line of time, severity, rule, record
and message per alert (-o text). Malformed input is reported on stderr as FILE:LINE and
skipped.`,
		Example: `  kubesift rules eval /var/log/kubernetes/audit.log
  kubesift rules eval --rules ./my-rules --summary audit-*.log events.json
  kubectl get events -A -o json | kubesift rules eval --cluster prod -
  kubesift rules eval -o text examples/scenario/audit.log`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			obs.ApplyBatchGC()
			eng, err := rules.New(rules.LoadOptions{NoBuiltin: f.noBuiltin, Dirs: dirs})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			w := bufio.NewWriterSize(cmd.OutOrStdout(), 64<<10)
			defer w.Flush()
			emit := json.NewEncoder(w).Encode
			if !out.json() {
				emit = func(v any) error { return writeAlertLine(w, v.(evalAlert)) }
			}
			st := &evalStats{byRule: map[string]int{}, bySev: map[string]int{}, rejected: map[string]int{}}
			// evalStream is done with each record (its alerts written)
			// before it reads the next.
			opts := record.DecodeOptions{Cluster: record.Cluster{Name: cluster}, ReuseBuffer: true}
			err = eachInput(cmd, args, func(r io.Reader, name string) error {
				return evalStream(eng, r, name, opts, emit, cmd.ErrOrStderr(), st)
			})
			if err != nil {
				return err
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if summary {
				st.print(cmd.ErrOrStderr())
			}
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().StringArrayVar(&dirs, "rules", nil, "rule directory or file layered over the built-in pack (repeatable)")
	cmd.Flags().StringVar(&cluster, "cluster", "local", "cluster name stamped on records")
	cmd.Flags().BoolVar(&summary, "summary", false, "print alerts by rule and severity, and records read/rejected, to stderr")
	out.bind(cmd, "json", "text")
	return cmd
}

// writeAlertLine is one alert of `rules eval -o text`.
func writeAlertLine(w io.Writer, a evalAlert) error {
	_, err := fmt.Fprintf(w, "%s  %-8s  %s  %s  %s\n", a.Time.UTC().Format(time.RFC3339), a.Severity, a.RuleID, a.RecordID, a.Message)
	return err
}

type evalStats struct {
	records  int
	byRule   map[string]int
	bySev    map[string]int
	rejected map[string]int
}

func evalStream(eng *rules.Engine, r io.Reader, name string, opts record.DecodeOptions, emit func(any) error, errw io.Writer, st *evalStats) error {
	d := record.NewDecoder(r, name, opts)
	for {
		rec, err := d.Next()
		if err == io.EOF {
			return nil
		}
		var de *record.DecodeError
		if errors.As(err, &de) {
			st.rejected[de.Reason()]++
			fmt.Fprintln(errw, de.Error())
			continue
		}
		if err != nil {
			return err
		}
		st.records++
		for _, a := range eng.Eval(rec) {
			st.byRule[a.RuleID]++
			st.bySev[a.Severity.String()]++
			if err := emit(toEvalAlert(a, rec)); err != nil {
				return err
			}
		}
	}
}

func toEvalAlert(a rules.Alert, rec *record.Record) evalAlert {
	id := a.RecordID
	switch {
	case rec.Audit != nil:
		id = string(rec.Audit.AuditID)
	case rec.CoreEvent != nil:
		id = string(rec.CoreEvent.UID)
	case rec.Event != nil:
		id = string(rec.Event.UID)
	}
	// Empty lists print as [] rather than null, so consumers need no nil case.
	if a.Tags == nil {
		a.Tags = []string{}
	}
	if a.Mitre.Tactics == nil {
		a.Mitre.Tactics = []string{}
	}
	if a.Mitre.Techniques == nil {
		a.Mitre.Techniques = []string{}
	}
	return evalAlert{Alert: a, RecordID: id, Record: a.RecordID}
}

func (st *evalStats) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "records read\t%d\n", st.records)
	rej := 0
	for _, n := range st.rejected {
		rej += n
	}
	fmt.Fprintf(tw, "records rejected\t%d\n", rej)
	for _, reason := range sortedKeys(st.rejected) {
		fmt.Fprintf(tw, "  %s\t%d\n", reason, st.rejected[reason])
	}
	fmt.Fprintln(tw, "\nSEVERITY\tALERTS")
	for _, s := range []string{"critical", "high", "medium", "low", "info"} {
		if st.bySev[s] > 0 {
			fmt.Fprintf(tw, "%s\t%d\n", s, st.bySev[s])
		}
	}
	fmt.Fprintln(tw, "\nRULE\tALERTS")
	for _, r := range sortedKeys(st.byRule) {
		fmt.Fprintf(tw, "%s\t%d\n", r, st.byRule[r])
	}
	tw.Flush()
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
