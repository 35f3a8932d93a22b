package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/collector/replay"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/logging"
	"github.com/kubesift/kubesift/pipeline"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink/ecs"
	"github.com/kubesift/kubesift/sink/ndjson"
	"github.com/kubesift/kubesift/sink/notify"
)

// terminal shares stdout (alerts, summary) and stderr (the progress line)
// so that an alert never lands in the middle of a progress line.
type terminal struct {
	mu       sync.Mutex
	out, err io.Writer
	live     bool // redraw one line with \r (stderr is a terminal)
	periodic bool // print a progress line every few seconds (--progress=always, not a terminal)
	shown    bool
}

func newTerminal(out, errw io.Writer, mode string) *terminal {
	tty := logging.IsTerminal(errw)
	return &terminal{out: out, err: errw, live: mode != "never" && tty, periodic: mode == "always" && !tty}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// alerts is the console's writer: it clears the progress line first.
func (t *terminal) alerts() io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.shown {
			fmt.Fprint(t.err, "\r\x1b[K")
			t.shown = false
		}
		return t.out.Write(p)
	})
}

// runProgress draws line() until stop is called; stop draws it a last time.
func (t *terminal) runProgress(line func() string) (stop func()) {
	if !t.live && !t.periodic {
		return func() {}
	}
	every := 200 * time.Millisecond
	if t.periodic {
		every = 2 * time.Second
	}
	quit, finished := make(chan struct{}), make(chan struct{})
	draw := func(final bool) {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.live {
			fmt.Fprint(t.err, "\r\x1b[K"+line())
			t.shown = true
			if final {
				fmt.Fprintln(t.err)
				t.shown = false
			}
		} else {
			fmt.Fprintln(t.err, line())
		}
	}
	go func() {
		defer close(finished)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-quit:
				draw(true)
				return
			case <-tk.C:
				draw(false)
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(quit); <-finished }) }
}

// progress reads the figures of the progress line and the summary.
type progress struct {
	reg     *prometheus.Registry
	rp      *replay.Replayer
	tally   *alertTally
	counted *countingWriter
	docs    *ecs.Builder
	objects int64         // published from object snapshots before the sources ran
	posture *postureTally // nil without the posture consumer
	nt      deliveries    // the notifier: its receivers' deliveries
}

// deliveries is what the progress line reads of the notifier.
type deliveries interface {
	Status() (waitingGroups int, integrations []notify.DeliveryStatus)
}

type progressSnapshot struct {
	// read: decoded from files; published: acknowledged by Kafka, all
	// sources; live: published by the live sources.
	read, published, live, deadLetters int64
	fileAudit, fileEvents              int64
	byIndex                            map[string]int // documents stored this run
	records                            int            // of which records (not alerts)
	alerts                             int
}

func (p *progress) snapshot() progressSnapshot {
	var s progressSnapshot
	m := gatherSums(p.reg)
	s.published = int64(m["kubesift_collector_publish_acked_records_total"])
	s.deadLetters = int64(m["kubesift_collector_publish_dead_letters_total"] + m["kubesift_processor_dlq_total"])
	s.live = s.published
	if p.rp != nil {
		rp := p.rp.Progress()
		s.read = rp.Read
		s.fileAudit, s.fileEvents = rp.Audit, rp.Events
		s.live = max(0, s.published-rp.Published-p.objects)
	}
	s.byIndex = p.counted.snapshot()
	for idx, n := range s.byIndex {
		if idx != p.docs.AlertsIndex() {
			s.records += n
		}
	}
	s.alerts = p.tally.snapshot().total
	return s
}

func (p *progress) line() string {
	s := p.snapshot()
	l := fmt.Sprintf("  read %d · published %d · indexed %d · alerts %d", s.read+s.live, s.published,
		s.records, s.alerts)
	if p.posture != nil {
		// Nothing until an object was judged: a run over audit logs only
		// has no posture to show.
		open, score, scored := p.posture.glance()
		if open > 0 || scored {
			l += fmt.Sprintf(" · findings %d open", open)
		}
		if scored {
			l += fmt.Sprintf(" · score %.1f", score)
		}
	}
	if s.deadLetters > 0 {
		l += fmt.Sprintf(" · dead letters %d", s.deadLetters)
	}
	if p.nt != nil {
		l += notificationsPart(p.nt.Status())
	}
	return l
}

// notificationsPart is the progress line's part about the receivers (the
// console is not one): their notifications pending, and the first failing
// one with its last error. Nothing while nothing is pending or failing.
func notificationsPart(_ int, ints []notify.DeliveryStatus) string {
	pending, failing := 0, 0
	var first *notify.DeliveryStatus
	for i := range ints {
		s := &ints[i]
		if s.Integration == pipeline.ConsoleReceiver {
			continue
		}
		pending += s.Pending()
		if s.Failing {
			failing++
			if first == nil {
				first = s
			}
		}
	}
	if pending == 0 && failing == 0 {
		return ""
	}
	l := fmt.Sprintf(" · notifications %d pending", pending)
	if first != nil {
		l += fmt.Sprintf(", %d failing (%s: %s)", failing, first.Integration, first.LastError)
	}
	return l
}

// gatherSums sums every series of each metric family of reg by name.
func gatherSums(reg *prometheus.Registry) map[string]float64 {
	out := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil && len(mfs) == 0 {
		return out
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				out[mf.GetName()] += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[mf.GetName()] += m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// summary is the table that ends a run.
type summary struct {
	elapsed     time.Duration
	interrupted bool
	drained     bool
	prog        progressSnapshot
	tally       tallySnapshot
	files       []ndjson.File
	esAddr      string
	dlFile      string
	dlCount     int
	sources     []string
	cfg         *config.Config
	posture     postureSnapshot
	objects     int // object records published from snapshots
	// undelivered are the integrations that did not deliver everything
	// (run.drainNotifier); notifyWait is --notify-wait.
	undelivered []notify.DeliveryStatus
	notifyWait  time.Duration
}

func (s *summary) print(w io.Writer) {
	state := "done"
	switch {
	case s.interrupted:
		state = "interrupted"
	case !s.drained:
		state = "stopped"
	}
	fmt.Fprintf(w, "\nkubesift run %s in %.1fs: %d records, %d alerts", state, s.elapsed.Seconds(),
		s.prog.records, s.tally.total)
	if s.posture.enabled {
		fmt.Fprintf(w, ", %d open findings, %d posture alerts", len(s.posture.open), s.posture.alerts)
	}
	fmt.Fprint(w, "\n\n")
	table(w, s.sourceRows)
	table(w, s.indexRows)
	table(w, s.severityRows)
	if len(s.tally.byRule) > 0 {
		table(w, s.ruleRows)
	}
	if s.posture.enabled {
		s.posture.print(w)
	}
	if len(s.undelivered) > 0 {
		table(w, s.undeliveredRows)
	}
	fmt.Fprintln(w, "OUTPUT")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	s.outputRows(tw)
	_ = tw.Flush()
}

// table writes the rows rows writes as one aligned table, and a blank line.
func table(w io.Writer, rows func(tw io.Writer)) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	rows(tw)
	_ = tw.Flush()
	fmt.Fprintln(w)
}

func (s *summary) sourceRows(tw io.Writer) {
	p := &s.prog
	fmt.Fprintln(tw, "SOURCE\tRECORDS\t")
	if len(s.sources) > 0 {
		fmt.Fprintf(tw, "files\t%d\t(audit %d, events %d)\n", p.read, p.fileAudit, p.fileEvents)
	}
	if s.objects > 0 {
		fmt.Fprintf(tw, "object snapshots\t%d\t(posture)\n", s.objects)
	}
	if p.live > 0 || len(s.sources) == 0 {
		fmt.Fprintf(tw, "live sources\t%d\t\n", p.live)
	}
	fmt.Fprintf(tw, "dead letters\t%d\t\n", p.deadLetters)
}

func (s *summary) indexRows(tw io.Writer) {
	idxs := make([]string, 0, len(s.prog.byIndex))
	for idx := range s.prog.byIndex {
		idxs = append(idxs, idx)
	}
	sort.Strings(idxs)
	fmt.Fprintln(tw, "INDEX\tDOCUMENTS")
	for _, idx := range idxs {
		fmt.Fprintf(tw, "%s\t%d\n", idx, s.prog.byIndex[idx])
	}
}

func (s *summary) severityRows(tw io.Writer) {
	bySev := map[rules.Severity]int{}
	for id, n := range s.tally.byRule {
		bySev[s.tally.sev[id]] += n
	}
	fmt.Fprintln(tw, "SEVERITY\tALERTS")
	for sev := rules.SeverityCritical; sev >= rules.SeverityInfo; sev-- {
		if bySev[sev] > 0 {
			fmt.Fprintf(tw, "%s\t%d\n", sev, bySev[sev])
		}
	}
}

func (s *summary) ruleRows(tw io.Writer) {
	ids := make([]string, 0, len(s.tally.byRule))
	for id := range s.tally.byRule {
		ids = append(ids, id)
	}
	// Most severe first, then most frequent, then by name.
	sort.Slice(ids, func(i, j int) bool {
		a, b := ids[i], ids[j]
		if s.tally.sev[a] != s.tally.sev[b] {
			return s.tally.sev[a] > s.tally.sev[b]
		}
		if s.tally.byRule[a] != s.tally.byRule[b] {
			return s.tally.byRule[a] > s.tally.byRule[b]
		}
		return a < b
	})
	fmt.Fprintln(tw, "RULE\tSEVERITY\tALERTS")
	for _, id := range ids {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", id, s.tally.sev[id], s.tally.byRule[id])
	}
}

// undeliveredRows lists the receivers' integrations that did not deliver
// every notification, with their last error (never a URL).
func (s *summary) undeliveredRows(tw io.Writer) {
	fmt.Fprintf(tw, "UNDELIVERED (waited up to --notify-wait %s)\tPENDING\tFAILED\tLAST ERROR\n", s.notifyWait)
	for _, u := range s.undelivered {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", u.Integration, u.Pending(), u.Failed, u.LastError)
	}
}

func (s *summary) outputRows(tw io.Writer) {
	if s.esAddr != "" {
		es := s.cfg.Sink.Elasticsearch
		fmt.Fprintf(tw, "elasticsearch %s\t%s, %s, %s\n", s.esAddr, es.Streams.Audit, es.Streams.Events, es.AlertsIndex)
		if s.posture.enabled {
			fmt.Fprintf(tw, "elasticsearch %s\t%s (findings), %s, %s\n", s.esAddr, es.Findings.Index, es.Findings.TransitionsStream, es.Findings.ScoresStream)
		}
	}
	for _, f := range s.files {
		note := ""
		if f.Index == s.cfg.Sink.Elasticsearch.Findings.Index {
			note = " (findings: current state, the last line of each event.id)"
		}
		fmt.Fprintf(tw, "%s\t%d documents%s\n", f.Path, f.Docs, note)
	}
	if s.dlFile != "" && s.dlCount > 0 {
		fmt.Fprintf(tw, "%s\t%d dead letters\n", s.dlFile, s.dlCount)
	}
	if len(s.cfg.Kafka.Brokers) > 0 && s.esAddr != "" {
		fmt.Fprintf(tw, "kafka %s\t%s\n", strings.Join(s.cfg.Kafka.Brokers, ","), s.cfg.Kafka.Topics.Alerts)
	}
}
