package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

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
  kubesift rules eval --rules ./my-rules audit.log`,
	}
	cmd.AddCommand(newRulesLintCommand(), newRulesTestCommand(), newRulesEvalCommand())
	return cmd
}

// ruleFlags are shared by the rules subcommands.
type ruleFlags struct {
	noBuiltin bool
}

func (f *ruleFlags) bind(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.noBuiltin, "no-builtin", false, "do not load the built-in rule pack")
}

func newRulesLintCommand() *cobra.Command {
	var f ruleFlags
	cmd := &cobra.Command{
		Use:   "lint [DIR...]",
		Short: "Load and type-check rules; report every problem",
		Example: `  kubesift rules lint                      # the built-in pack
  kubesift rules lint ./my-rules           # the pack with your rules layered on top
  kubesift rules lint --no-builtin ./my-rules`,
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := rules.Load(rules.LoadOptions{NoBuiltin: f.noBuiltin, Dirs: args})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			bySource := map[string]int{}
			for _, r := range set.Rules() {
				bySource[r.Source]++
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d rules (audit %d, event %d, object %d)\n",
				len(set.Rules()), bySource["audit"], bySource["event"], bySource["object"])
			return nil
		},
	}
	f.bind(cmd)
	return cmd
}

func newRulesTestCommand() *cobra.Command {
	var f ruleFlags
	var verbose bool
	cmd := &cobra.Command{
		Use:   "test [DIR...]",
		Short: "Run rule fixtures (tests/*.yaml next to the rules) and report like go test",
		Example: `  kubesift rules test                # the built-in pack's fixtures
  kubesift rules test -v ./my-rules  # your rules and their fixtures in ./my-rules/tests`,
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
			out := cmd.OutOrStdout()
			failed := 0
			for _, r := range results {
				switch {
				case !r.Passed:
					failed++
					fmt.Fprintf(out, "--- FAIL: %s/%s (%.3fs)\n    %s: %s\n", r.Rule, r.Name, r.Duration.Seconds(), r.File, r.Detail)
				case verbose:
					fmt.Fprintf(out, "--- PASS: %s/%s (%.3fs)\n", r.Rule, r.Name, r.Duration.Seconds())
				}
			}
			if failed > 0 {
				fmt.Fprintf(out, "FAIL\t%d of %d fixtures failed (%.3fs)\n", failed, len(results), time.Since(start).Seconds())
				return &exitError{code: 1, err: fmt.Errorf("%d fixture(s) failed", failed)}
			}
			fmt.Fprintf(out, "ok\t%d fixtures passed (%.3fs)\n", len(results), time.Since(start).Seconds())
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "list passing fixtures too")
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
alert per line to stdout. Malformed input is reported on stderr as FILE:LINE and skipped.`,
		Example: `  kubesift rules eval /var/log/kubernetes/audit.log
  kubesift rules eval --rules ./my-rules --summary audit-*.log events.json
  kubectl get events -A -o json | kubesift rules eval --cluster prod -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, err := rules.New(rules.LoadOptions{NoBuiltin: f.noBuiltin, Dirs: dirs})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			out := bufio.NewWriterSize(cmd.OutOrStdout(), 64<<10)
			defer out.Flush()
			enc := json.NewEncoder(out)
			st := &evalStats{byRule: map[string]int{}, bySev: map[string]int{}, rejected: map[string]int{}}
			opts := record.DecodeOptions{Cluster: record.Cluster{Name: cluster}}
			err = eachInput(cmd, args, func(r io.Reader, name string) error {
				return evalStream(eng, r, name, opts, enc, cmd.ErrOrStderr(), st)
			})
			if err != nil {
				return err
			}
			if err := out.Flush(); err != nil {
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
	return cmd
}

type evalStats struct {
	records  int
	byRule   map[string]int
	bySev    map[string]int
	rejected map[string]int
}

func evalStream(eng *rules.Engine, r io.Reader, name string, opts record.DecodeOptions, enc *json.Encoder, errw io.Writer, st *evalStats) error {
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
			if err := enc.Encode(toEvalAlert(a, rec)); err != nil {
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
