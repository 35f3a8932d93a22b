package main

import (
	"bufio"
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kubesift/kubesift/record"
)

// sampleAudit is an audit log recorded from a real kube-apiserver (the test
// ground) by hack/record-sample.sh; it lets `records decode --sample` run with
// no cluster at all.
//
//go:embed sample/audit.log
var sampleAudit []byte

func newRecordsCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "records",
		Short:   "Work with kubesift records (the envelope every component exchanges)",
		Example: `  kubesift records decode /var/log/kubernetes/audit.log`,
	}
	cmd.AddCommand(newRecordsDecodeCommand(g))
	return cmd
}

// decodeFlags are the flags of `records decode`.
type decodeFlags struct {
	cluster string
	summary bool
	sample  bool
	quiet   bool
}

func newRecordsDecodeCommand(g *globalFlags) *cobra.Command {
	var (
		f   decodeFlags
		out outputFormat
	)
	decode := &cobra.Command{
		Use:   "decode [FILE...]",
		Short: "Decode audit events and Kubernetes Events into kubesift records (one JSON envelope per line)",
		Long: `decode reads audit events and Kubernetes Events in every form kubesift accepts — a single
audit event, an audit EventList, NDJSON audit log lines (v1 or v1beta1, with or without
apiVersion), core/v1 and events.k8s.io/v1 Events and their lists, AKS and GKE log wrappers —
and writes each as the record envelope that the collector publishes to Kafka. Bad input is
reported on stderr as FILE:LINE: FIELD: problem and skipped; the rest is decoded. The exit
status is 1 when any input was rejected. The records are JSON lines (-o json, the only
format).`,
		Example: `  # decode an API server audit log
  kubesift records decode /var/log/kubernetes/audit.log > records.ndjson
  # read stdin, stamp a cluster name, and print counts
  kubectl get events -A -o json | kubesift records decode --cluster prod-eu --summary -
  # the embedded sample recorded from a real kube-apiserver
  kubesift records decode --sample --summary --quiet`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, _, err := g.load(cmd); err != nil {
				return err
			}
			if len(args) == 0 && !f.sample {
				return usageError(cmd, errors.New("name at least one FILE (- for stdin), or --sample"))
			}
			return f.decode(cmd, args)
		},
	}
	fl := decode.Flags()
	fl.StringVar(&f.cluster, "cluster", "local", "cluster name stamped on every record")
	fl.BoolVar(&f.summary, "summary", false, "print counts by source and rejection reason to stderr")
	fl.BoolVar(&f.sample, "sample", false, "decode the embedded sample audit log recorded from a real kube-apiserver")
	fl.BoolVar(&f.quiet, "quiet", false, "do not write the records, only errors (and the summary)")
	// Records are JSON envelopes, one per line: -o json is the only form,
	// accepted so that every data command takes the same flag.
	out.bind(decode, "json")
	return decode
}

// decode writes the records of the sample (with --sample) and of every
// input in args to stdout, the rejected documents and the summary to stderr.
func (f *decodeFlags) decode(cmd *cobra.Command, args []string) error {
	out := bufio.NewWriterSize(cmd.OutOrStdout(), 64<<10)
	defer out.Flush()
	st := &decodeStats{bySource: map[record.Source]int{}, byReason: map[string]int{}}
	opts := record.DecodeOptions{Cluster: record.Cluster{Name: f.cluster}}
	run := func(r io.Reader, name string) error {
		return decodeStream(r, name, opts, out, cmd.ErrOrStderr(), st, f.quiet)
	}
	if f.sample {
		if err := run(bytes.NewReader(sampleAudit), "sample/audit.log"); err != nil {
			return err
		}
	}
	if err := eachInput(cmd, args, run); err != nil {
		return err
	}
	if err := out.Flush(); err != nil {
		return err
	}
	if f.summary {
		st.print(cmd.ErrOrStderr())
	}
	if st.rejected > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d input document(s) rejected", st.rejected)}
	}
	return nil
}

// eachInput calls read on every input named in args, in order: "-" is the
// command's stdin (named "stdin"), anything else a file, closed once read.
func eachInput(cmd *cobra.Command, args []string, read func(r io.Reader, name string) error) error {
	for _, a := range args {
		if a == "-" {
			if err := read(cmd.InOrStdin(), "stdin"); err != nil {
				return err
			}
			continue
		}
		f, err := os.Open(a)
		if err != nil {
			return err
		}
		err = read(f, a)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

type decodeStats struct {
	bySource map[record.Source]int
	byReason map[string]int
	rejected int
}

func decodeStream(r io.Reader, name string, opts record.DecodeOptions, out io.Writer, errw io.Writer, st *decodeStats, quiet bool) error {
	d := record.NewDecoder(r, name, opts)
	for {
		rec, err := d.Next()
		if err == io.EOF {
			return nil
		}
		var de *record.DecodeError
		if errors.As(err, &de) {
			st.rejected++
			st.byReason[de.Reason()]++
			fmt.Fprintln(errw, de.Error())
			continue
		}
		if err != nil {
			return err
		}
		st.bySource[rec.Source]++
		if quiet {
			continue
		}
		b, err := record.Marshal(rec)
		if err != nil {
			return err
		}
		out.Write(append(b, '\n'))
	}
}

func (st *decodeStats) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tRECORDS")
	var srcs []string
	for s := range st.bySource {
		srcs = append(srcs, string(s))
	}
	sort.Strings(srcs)
	for _, s := range srcs {
		fmt.Fprintf(tw, "%s\t%d\n", s, st.bySource[record.Source(s)])
	}
	if st.rejected > 0 {
		fmt.Fprintln(tw, "REJECTED (REASON)\tDOCUMENTS")
		var rs []string
		for r := range st.byReason {
			rs = append(rs, r)
		}
		sort.Strings(rs)
		for _, r := range rs {
			fmt.Fprintf(tw, "%s\t%d\n", r, st.byReason[r])
		}
	}
	tw.Flush()
}
