package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/collector/publish"
	"github.com/kubesift/kubesift/collector/replay"
	"github.com/kubesift/kubesift/internal/atomicfile"
	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/kafkaopts"
	"github.com/kubesift/kubesift/internal/logging"
	"github.com/kubesift/kubesift/pipeline"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
	"github.com/kubesift/kubesift/sink/ndjson"
	"github.com/kubesift/kubesift/sink/notify"
)

// alertTally counts the alerts the rules raise, by rule and severity, for
// the summary. It wraps the engine the processor evaluates with.
type alertTally struct {
	eng    *rules.Engine
	mu     sync.Mutex
	byRule map[string]int
	sev    map[string]rules.Severity
	total  int
}

func newAlertTally(eng *rules.Engine) *alertTally {
	return &alertTally{eng: eng, byRule: map[string]int{}, sev: map[string]rules.Severity{}}
}

// Eval is the engine's, counted.
func (t *alertTally) Eval(r *record.Record) []rules.Alert {
	as := t.eng.Eval(r)
	if len(as) == 0 {
		return as
	}
	t.mu.Lock()
	for i := range as {
		t.byRule[as[i].RuleID]++
		t.sev[as[i].RuleID] = as[i].Severity
		t.total++
	}
	t.mu.Unlock()
	return as
}

type tallySnapshot struct {
	total  int
	byRule map[string]int
	sev    map[string]rules.Severity
}

func (t *alertTally) snapshot() tallySnapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := tallySnapshot{total: t.total, byRule: map[string]int{}, sev: map[string]rules.Severity{}}
	for k, v := range t.byRule {
		s.byRule[k], s.sev[k] = v, t.sev[k]
	}
	return s
}

// countingWriter counts the documents its store finished, by index.
type countingWriter struct {
	sink.Writer
	mu       sync.Mutex
	byIndex  map[string]int // indexed or duplicate
	rejected int
}

func newCountingWriter(w sink.Writer) *countingWriter {
	return &countingWriter{Writer: w, byIndex: map[string]int{}}
}

// Add passes d on and counts its outcome.
func (c *countingWriter) Add(ctx context.Context, d sink.Doc, done func(sink.Result)) error {
	idx := d.Index
	return c.Writer.Add(ctx, d, func(r sink.Result) {
		c.mu.Lock()
		if r.Status == sink.Rejected {
			c.rejected++
		} else {
			c.byIndex[idx]++
		}
		c.mu.Unlock()
		done(r)
	})
}

func (c *countingWriter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.byIndex)
}

// runNotifier is `kubesift notify` without Elasticsearch: the alerts
// consumer and the dispatcher, with the console as a receiver that takes
// every alert, beside the configured ones.
type runNotifier struct {
	consumer *pipeline.NotifyConsumer
	d        *notify.Dispatcher
	dlq      *kafka.Writer
}

// consoleReceiver is the receiver name run reserves for the console.
const consoleReceiver = "console"

func newRunNotifier(cfg *config.Config, term *terminal, quiet bool, reg prometheus.Registerer, log *slog.Logger) (*runNotifier, error) {
	n := &cfg.Notify
	// One group per cluster and rule, sent at once and then at most
	// every half second: the console shows alerts as they come, and a
	// replay is not held up by group timers.
	wait, interval, repeat := time.Duration(0), 500*time.Millisecond, time.Hour
	root := config.RouteConfig{Receiver: consoleReceiver, GroupBy: []string{"cluster", "rule_id"},
		GroupWait: &wait, GroupInterval: &interval, RepeatInterval: &repeat}
	var console notify.Notifier = notify.NewConsole(term.alerts(), nil)
	if quiet {
		console = notify.NotifierFunc(func(context.Context, *notify.Notification) (bool, error) { return false, nil })
	}
	receivers := map[string][]notify.Integration{consoleReceiver: {{Name: consoleReceiver, Notifier: console}}}
	var inhibitor *notify.Inhibitor
	if n.Configured() {
		user, err := buildReceivers(n)
		if err != nil {
			return nil, err
		}
		for name, ints := range user {
			if name == consoleReceiver {
				return nil, fmt.Errorf("notify.receivers: the name %q is reserved by run for the console", consoleReceiver)
			}
			receivers[name] = ints
		}
		// The console sees everything (continue), then the configured
		// tree routes as it would in `kubesift notify`.
		root.Routes = []config.RouteConfig{{Receiver: consoleReceiver, Continue: true}, n.Route}
		if inhibitor, err = notify.NewInhibitor(n.InhibitRules); err != nil {
			return nil, err
		}
	}
	route, err := notify.NewRoute(&root)
	if err != nil {
		return nil, err
	}
	metrics, err := notify.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	d, err := notify.New(notify.Options{
		Route: route, Receivers: receivers, Inhibitor: inhibitor,
		MaxGroups: n.MaxGroups, MaxAlertsPerGroup: n.MaxAlertsPerGroup, QueueSize: n.QueueSize,
		Backoff:     backoff.Policy{Initial: n.Retry.InitialBackoff, Max: n.Retry.MaxBackoff},
		GiveUpAfter: n.Retry.GiveUpAfter, Log: log, Metrics: metrics,
	})
	if err != nil {
		return nil, err
	}
	dialer, err := kafkaopts.Dialer(cfg.Kafka)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	transport, err := kafkaopts.Transport(cfg.Kafka)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	dlq := &kafka.Writer{Addr: kafka.TCP(cfg.Kafka.Brokers...), Transport: transport, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 10 * time.Millisecond, WriteTimeout: 10 * time.Second}
	consumer, err := pipeline.NewNotifyConsumer(pipeline.NotifyConsumerOptions{
		Brokers: cfg.Kafka.Brokers, Dialer: dialer, Topic: cfg.Kafka.Topics.Alerts, GroupID: n.ConsumerGroup,
		DLQ: pipeline.NotifyDLQWriter(dlq, cfg.Kafka.Topics.DLQ), Dispatcher: d, CommitInterval: 100 * time.Millisecond,
		Log: log, Registerer: reg,
	})
	if err != nil {
		_ = dlq.Close()
		return nil, err
	}
	return &runNotifier{consumer: consumer, d: d, dlq: dlq}, nil
}

// run consumes alerts until ctx ends.
func (r *runNotifier) run(ctx context.Context) error {
	dctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = r.d.Run(dctx) }()
	err := r.consumer.Run(ctx)
	cancel()
	wg.Wait()
	_ = r.dlq.Close()
	return err
}

// waitDrained returns nil once the publisher holds nothing back and the
// processor's and the notifier's consumer groups have committed the end of
// every partition they read: every record published is indexed and every
// alert notified. It polls the broker, so it holds for any Kafka.
func waitDrained(ctx context.Context, cfg *config.Config, pub *publish.Publisher, log *slog.Logger) error {
	transport, err := kafkaopts.Transport(cfg.Kafka)
	if err != nil {
		return err
	}
	cl := &kafka.Client{Addr: kafka.TCP(cfg.Kafka.Brokers...), Transport: transport, Timeout: 5 * time.Second}
	groups := []struct {
		id     string
		topics []string
	}{
		{cfg.Processor.GroupID, cfg.Processor.ConsumedTopics(cfg.Kafka)},
		{cfg.Notify.ConsumerGroup, []string{cfg.Kafka.Topics.Alerts}},
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if pub.Stats().Spooling {
			continue
		}
		done := true
		for _, g := range groups {
			lag, err := groupLag(ctx, cl, g.id, g.topics)
			if err != nil {
				// Transient (a group still joining, a coordinator
				// moving): asked again at the next tick.
				done = false
				log.Debug("waiting for the pipeline to drain", "group", g.id, "err", err)
				break
			}
			if lag > 0 {
				log.Debug("waiting for the pipeline to drain", "group", g.id, "lag", lag)
				done = false
				break
			}
		}
		if done {
			return nil
		}
	}
}

// groupLag is how many messages of topics the group has not committed.
func groupLag(ctx context.Context, cl *kafka.Client, group string, topics []string) (int64, error) {
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return 0, err
	}
	ends := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	fetch := &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{}}
	for _, t := range md.Topics {
		if t.Error != nil {
			return 0, fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			ends.Topics[t.Name] = append(ends.Topics[t.Name], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
			fetch.Topics[t.Name] = append(fetch.Topics[t.Name], p.ID)
		}
	}
	lo, err := cl.ListOffsets(ctx, ends)
	if err != nil {
		return 0, err
	}
	of, err := cl.OffsetFetch(ctx, fetch)
	if err != nil {
		return 0, err
	}
	if of.Error != nil {
		return 0, of.Error
	}
	committed := map[string]map[int]int64{}
	for topic, ps := range of.Topics {
		committed[topic] = map[int]int64{}
		for _, p := range ps {
			if p.Error != nil {
				return 0, p.Error
			}
			committed[topic][p.Partition] = p.CommittedOffset
		}
	}
	var lag int64
	for topic, ps := range lo.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return 0, p.Error
			}
			c, ok := committed[topic][p.Partition]
			if !ok || c < p.FirstOffset {
				c = p.FirstOffset // nothing committed yet (-1): all of it is lag
			}
			if p.LastOffset > c {
				lag += p.LastOffset - c
			}
		}
	}
	return lag, nil
}

// deadLetterLine is one line of dead-letters.ndjson.
type deadLetterLine struct {
	Offset  int64             `json:"offset"`
	Time    time.Time         `json:"time"`
	Key     string            `json:"key,omitempty"`
	Headers map[string]string `json:"headers"`
	// Value is the message when it is text; ValueBase64 otherwise.
	Value       string `json:"value,omitempty"`
	ValueBase64 []byte `json:"value_base64,omitempty"`
}

// saveDeadLetters appends the messages of the (single-partition, embedded)
// dead-letter topic to path and returns how many it wrote. For a broker
// that keeps its log on disk (live sources), mark names the file holding
// the next offset to save (written by atomic rename), so the next run does
// not append the old dead letters again; "" for an in-memory broker, whose
// topic starts empty. No file is written when there are none.
func saveDeadLetters(ctx context.Context, broker, topic, path, mark string) (int, error) {
	conn, err := kafka.DialLeader(ctx, "tcp", broker, topic, 0)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return 0, err
	}
	if mark != "" {
		if b, err := os.ReadFile(mark); err == nil {
			if next, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && next > first && next <= last {
				first = next
			}
		}
	}
	if last <= first {
		return 0, nil
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(dl)
	}
	if _, err := conn.Seek(first, kafka.SeekAbsolute); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return 0, err
	}
	enc := json.NewEncoder(f)
	n := 0
	batch := conn.ReadBatch(1, 64<<20)
	for next := first; next < last; {
		m, err := batch.ReadMessage()
		if errors.Is(err, io.EOF) {
			// The batch ended before the high watermark: fetch the next.
			_ = batch.Close()
			batch = conn.ReadBatch(1, 64<<20)
			continue
		}
		if err != nil {
			_ = batch.Close()
			_ = f.Close()
			return n, err
		}
		next = m.Offset + 1
		line := deadLetterLine{Offset: m.Offset, Time: m.Time.UTC(), Key: string(m.Key), Headers: map[string]string{}}
		for _, h := range m.Headers {
			line.Headers[h.Key] = string(h.Value)
		}
		if utf8.Valid(m.Value) {
			line.Value = string(m.Value)
		} else {
			line.ValueBase64 = m.Value
		}
		if err := enc.Encode(&line); err != nil {
			_ = batch.Close()
			_ = f.Close()
			return n, err
		}
		n++
	}
	_ = batch.Close()
	if err := f.Close(); err != nil {
		return n, err
	}
	if mark == "" {
		return n, nil
	}
	return n, atomicfile.WriteFile(mark, []byte(strconv.FormatInt(last, 10)+"\n"))
}

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
		s.live = max(0, s.published-rp.Published)
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
	if s.deadLetters > 0 {
		l += fmt.Sprintf(" · dead letters %d", s.deadLetters)
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
}

func (s *summary) print(w io.Writer) {
	p := &s.prog
	state := "done"
	switch {
	case s.interrupted:
		state = "interrupted"
	case !s.drained:
		state = "stopped"
	}
	fmt.Fprintf(w, "\nkubesift run %s in %.1fs: %d records, %d alerts\n\n", state, s.elapsed.Seconds(),
		p.records, s.tally.total)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tRECORDS\t")
	if len(s.sources) > 0 {
		fmt.Fprintf(tw, "files\t%d\t(audit %d, events %d)\n", p.read, p.fileAudit, p.fileEvents)
	}
	if p.live > 0 || len(s.sources) == 0 {
		fmt.Fprintf(tw, "live sources\t%d\t\n", p.live)
	}
	fmt.Fprintf(tw, "dead letters\t%d\t\n", p.deadLetters)
	_ = tw.Flush()
	fmt.Fprintln(w)

	idxs := make([]string, 0, len(p.byIndex))
	for idx := range p.byIndex {
		idxs = append(idxs, idx)
	}
	sort.Strings(idxs)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tDOCUMENTS")
	for _, idx := range idxs {
		fmt.Fprintf(tw, "%s\t%d\n", idx, p.byIndex[idx])
	}
	_ = tw.Flush()
	fmt.Fprintln(w)

	bySev := map[rules.Severity]int{}
	ids := make([]string, 0, len(s.tally.byRule))
	for id, n := range s.tally.byRule {
		bySev[s.tally.sev[id]] += n
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
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEVERITY\tALERTS")
	for sev := rules.SeverityCritical; sev >= rules.SeverityInfo; sev-- {
		if bySev[sev] > 0 {
			fmt.Fprintf(tw, "%s\t%d\n", sev, bySev[sev])
		}
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	if len(ids) > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "RULE\tSEVERITY\tALERTS")
		for _, id := range ids {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", id, s.tally.sev[id], s.tally.byRule[id])
		}
		_ = tw.Flush()
		fmt.Fprintln(w)
	}

	fmt.Fprintln(w, "OUTPUT")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if s.esAddr != "" {
		es := s.cfg.Sink.Elasticsearch
		fmt.Fprintf(tw, "elasticsearch %s\t%s, %s, %s\n", s.esAddr, es.Streams.Audit, es.Streams.Events, es.AlertsIndex)
	}
	for _, f := range s.files {
		fmt.Fprintf(tw, "%s\t%d documents\n", f.Path, f.Docs)
	}
	if s.dlFile != "" && s.dlCount > 0 {
		fmt.Fprintf(tw, "%s\t%d dead letters\n", s.dlFile, s.dlCount)
	}
	if len(s.cfg.Kafka.Brokers) > 0 && s.esAddr != "" {
		fmt.Fprintf(tw, "kafka %s\t%s\n", strings.Join(s.cfg.Kafka.Brokers, ","), s.cfg.Kafka.Topics.Alerts)
	}
	_ = tw.Flush()
}
