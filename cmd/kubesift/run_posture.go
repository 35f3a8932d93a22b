package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/kubesift/kubesift/pipeline"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
)

// postureTally watches the posture consumer's findings sink for run's
// display: it prints each transition once the store has it, and keeps the
// current state of every finding and the last score written of every
// cluster for the summary. Its memory is one Decision per finding, the
// size of the findings index itself.
type postureTally struct {
	pipeline.FindingsSink
	out   io.Writer // nil: transitions are not printed (--quiet)
	mu    sync.Mutex
	state map[string]tallied // finding id -> newest state the store took
	score map[string]posture.Score
}

type tallied struct {
	d posture.Decision
	v int64
}

func newPostureTally(fs pipeline.FindingsSink, out io.Writer) *postureTally {
	return &postureTally{FindingsSink: fs, out: out, state: map[string]tallied{}, score: map[string]posture.Score{}}
}

// Write passes fs on and takes each finding the store wrote.
func (t *postureTally) Write(ctx context.Context, fs []ecs.Finding, done func(f *ecs.Finding, r sink.Result)) error {
	return t.FindingsSink.Write(ctx, fs, func(f *ecs.Finding, r sink.Result) {
		if r.Status == sink.Indexed {
			t.took(&f.Decision)
		}
		if done != nil {
			done(f, r)
		}
	})
}

// took keeps d and prints it, unless a newer state of its finding is kept
// (the store refuses the older one too).
func (t *postureTally) took(d *posture.Decision) {
	if t.keep(d) && t.out != nil {
		fmt.Fprintln(t.out, printable(fmt.Sprintf("finding %-8s %-8s %s  %s  %s", d.State, d.Severity, d.CheckID, objectName(d.Object), d.Message)))
	}
}

// printable replaces control and format characters with spaces, as the
// console receiver does for alerts: a message quotes the object (an image
// name, a command line), and a crafted object must not drive the terminal
// or forge a line.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}

// keep keeps d unless a newer state of its finding is kept.
func (t *postureTally) keep(d *posture.Decision) bool {
	v, err := ecs.FindingVersion(d)
	if err != nil {
		return false // the store rejects it
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if v <= t.state[d.ID].v {
		return false
	}
	t.state[d.ID] = tallied{*d, v}
	return true
}

// restored is read with the state of each finding the posture consumer
// restores (an earlier run's, from the store), so the summary counts the
// findings that stay open without a transition; they are not printed.
func (t *postureTally) restored(read pipeline.StateReader) pipeline.StateReader {
	return func(ctx context.Context, cluster string) ([]posture.Decision, error) {
		ds, err := read(ctx, cluster)
		for i := range ds {
			t.keep(&ds[i])
		}
		return ds, err
	}
}

// WriteScores passes the scores on and keeps the cluster's total.
func (t *postureTally) WriteScores(ctx context.Context, cluster string, total posture.Score, byNamespace map[string]posture.Score, at time.Time, done func(sink.Result)) error {
	t.mu.Lock()
	t.score[cluster] = total
	t.mu.Unlock()
	return t.FindingsSink.WriteScores(ctx, cluster, total, byNamespace, at, done)
}

// glance is the progress line's part: the open findings, and the score
// when exactly one cluster was scored (several have one each: the summary
// lists them).
func (t *postureTally) glance() (open int, score float64, scored bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, st := range t.state {
		if st.d.Open() {
			open++
		}
	}
	for _, sc := range t.score {
		score = sc.Percent
	}
	return open, score, len(t.score) == 1
}

// postureSnapshot is what the summary shows of posture.
type postureSnapshot struct {
	enabled bool
	scores  map[string]posture.Score
	open    []posture.Decision // most severe first
	alerts  int                // posture alerts acknowledged on the alerts topic
}

func (t *postureTally) snapshot() postureSnapshot {
	if t == nil {
		return postureSnapshot{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := postureSnapshot{enabled: true, scores: map[string]posture.Score{}}
	for c, sc := range t.score {
		s.scores[c] = sc
	}
	for _, st := range t.state {
		if st.d.Open() {
			s.open = append(s.open, st.d)
		}
	}
	sort.Slice(s.open, func(i, j int) bool {
		a, b := &s.open[i], &s.open[j]
		if a.Severity != b.Severity {
			return a.Severity > b.Severity
		}
		return a.ID < b.ID
	})
	return s
}

// topFindings is how many open findings the summary lists.
const topFindings = 10

// postureRows writes the posture part of the summary: the score of each
// cluster, the open findings by severity and by CIS section, and the most
// severe ones.
func (s *postureSnapshot) print(w io.Writer) {
	clusters := make([]string, 0, len(s.scores))
	for c := range s.scores {
		clusters = append(clusters, c)
	}
	sort.Strings(clusters)
	table(w, func(tw io.Writer) {
		fmt.Fprintln(tw, "POSTURE\tSCORE\tPASSED\tFAILED\tOPEN FINDINGS")
		open := map[string]int{}
		for _, d := range s.open {
			open[d.Cluster]++
		}
		for _, c := range clusters {
			sc := s.scores[c]
			fmt.Fprintf(tw, "%s\t%.1f\t%d\t%d\t%d\n", c, sc.Percent, sc.Passed, sc.Failed, open[c])
		}
		if len(clusters) == 0 {
			fmt.Fprintf(tw, "(no objects judged)\t\t\t\t%d\n", len(s.open))
		}
	})
	if len(s.open) == 0 {
		return
	}
	bySev, bySection := map[rules.Severity]int{}, map[string]int{}
	for _, d := range s.open {
		bySev[d.Severity]++
		bySection[cisSection(d.CIS)]++
	}
	table(w, func(tw io.Writer) {
		fmt.Fprintln(tw, "SEVERITY\tFINDINGS")
		for sev := rules.SeverityCritical; sev >= rules.SeverityInfo; sev-- {
			if bySev[sev] > 0 {
				fmt.Fprintf(tw, "%s\t%d\n", sev, bySev[sev])
			}
		}
	})
	sections := make([]string, 0, len(bySection))
	for sec := range bySection {
		sections = append(sections, sec)
	}
	sort.Strings(sections)
	table(w, func(tw io.Writer) {
		fmt.Fprintln(tw, "CIS SECTION\tFINDINGS")
		for _, sec := range sections {
			fmt.Fprintf(tw, "%s\t%d\n", sec, bySection[sec])
		}
	})
	table(w, func(tw io.Writer) {
		fmt.Fprintf(tw, "TOP FINDINGS (%d of %d)\tSEVERITY\tCIS\tOBJECT\n", min(topFindings, len(s.open)), len(s.open))
		for _, d := range s.open[:min(topFindings, len(s.open))] {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.CheckID, d.Severity, strings.Join(d.CIS, ","), objectName(d.Object))
		}
	})
}

// cisSection is the CIS section of a finding: the first two numbers of its
// first item ("5.2.3" is in 5.2), "-" for the programme's own checks.
func cisSection(cis []string) string {
	if len(cis) == 0 {
		return "-"
	}
	parts := strings.SplitN(cis[0], ".", 3)
	return strings.Join(parts[:min(2, len(parts))], ".")
}
