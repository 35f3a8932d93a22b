package audittail

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/record"
)

// fakePub is an in-memory collector.Publisher that records what it got and
// can be told to refuse (ErrBackpressure or another error) or to block.
type fakePub struct {
	mu       sync.Mutex
	ids      map[string]int // record ID -> times published
	order    []string
	dls      []collector.DeadLetter
	refuse   int              // refuse this many Publish calls with err
	err      error            // what to refuse with (ErrBackpressure when nil)
	failAll  error            // refuse every call with this
	poison   map[string]error // refuse every call holding one of these record IDs
	block    chan struct{}
	calls    int
	maxBatch int
}

func newFakePub() *fakePub { return &fakePub{ids: map[string]int{}} }

func (p *fakePub) Publish(ctx context.Context, recs []*record.Record) error {
	p.mu.Lock()
	p.calls++
	block := p.block
	if p.failAll != nil {
		err := p.failAll
		p.mu.Unlock()
		return err
	}
	for _, r := range recs {
		if err := p.poison[r.ID]; err != nil {
			p.mu.Unlock()
			return err
		}
	}
	if p.refuse > 0 {
		p.refuse--
		err := p.err
		if err == nil {
			err = collector.ErrBackpressure
		}
		p.mu.Unlock()
		return err
	}
	p.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.maxBatch = max(p.maxBatch, len(recs))
	for _, r := range recs {
		if r.Audit == nil || r.Object == nil {
			return fmt.Errorf("record %s without typed view or object", r.ID)
		}
		p.ids[r.ID]++
		p.order = append(p.order, r.ID)
	}
	return nil
}

func (p *fakePub) PublishDeadLetters(_ context.Context, dls []collector.DeadLetter) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failAll != nil {
		return p.failAll
	}
	p.dls = append(p.dls, dls...)
	return nil
}

func (p *fakePub) n(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ids[id]
}

func (p *fakePub) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ids)
}

func (p *fakePub) published() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.order...)
}

func (p *fakePub) deadLetters() []collector.DeadLetter {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]collector.DeadLetter(nil), p.dls...)
}

func (p *fakePub) duplicates() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var d []string
	for id, n := range p.ids {
		if n > 1 {
			d = append(d, id)
		}
	}
	sort.Strings(d)
	return d
}

// line is one audit log line as kube-apiserver writes it; its record ID is
// id + ":ResponseComplete". pad makes it longer.
func line(id string, pad int) string {
	return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":%q,"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/configmaps/x%s","verb":"get","user":{"username":"alice","groups":["system:authenticated"]},"sourceIPs":["10.0.0.1"],"userAgent":"test","objectRef":{"resource":"configmaps","namespace":"default","name":"x","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-01-02T03:04:05.000000Z","stageTimestamp":"2026-01-02T03:04:05.100000Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}`+"\n",
		id, strings.Repeat("y", pad))
}

func rid(id string) string { return id + ":ResponseComplete" }

type tailEnv struct {
	t         *testing.T
	dir       string
	path      string
	positions string
	pub       *fakePub
	pipe      collector.Publisher // when set, the Tailer publishes through it (a Pipeliner around pub)
	reg       *prometheus.Registry
	tl        *Tailer
	cancel    context.CancelFunc
	done      chan error
}

type tailOpt func(*config.AuditTailConfig)

func startAt(s string) tailOpt { return func(c *config.AuditTailConfig) { c.StartAt = s } }
func batchLines(n int) tailOpt { return func(c *config.AuditTailConfig) { c.BatchLines = n } }
func maxLine(n int) tailOpt    { return func(c *config.AuditTailConfig) { c.MaxLineBytes = n } }

func newTailEnv(t *testing.T) *tailEnv {
	dir := t.TempDir()
	return &tailEnv{t: t, dir: dir, path: filepath.Join(dir, "audit.log"), positions: filepath.Join(dir, "state", "positions.yaml"), pub: newFakePub()}
}

// start runs a Tailer (a new one each time: a restart) and waits for Started.
func (e *tailEnv) start(opts ...tailOpt) *Tailer {
	e.t.Helper()
	cc := config.Default().Collector
	c := cc.AuditTail
	c.Enabled, c.Paths, c.PositionsFile = true, []string{e.path}, e.positions
	c.PollInterval, c.BatchWait, c.PositionsSyncInterval = 20*time.Millisecond, 20*time.Millisecond, 50*time.Millisecond
	c.StartAt = "beginning"
	for _, o := range opts {
		o(&c)
	}
	e.reg = prometheus.NewRegistry()
	san, err := redact.New(cc.Redaction, cc.Size, 512, e.reg, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	var logw io.Writer = io.Discard
	if os.Getenv("KUBESIFT_TEST_LOG") != "" {
		logw = os.Stderr
	}
	var pub collector.Publisher = e.pub
	if e.pipe != nil {
		pub = e.pipe
	}
	tl, err := New(Options{Config: c, Publisher: pub, Sanitizer: san, Cluster: record.Cluster{Name: "c1"},
		DeadLetterMaxBytes: 512, Registerer: e.reg, Logger: slog.New(slog.NewTextHandler(logw, nil))})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.tl, e.cancel, e.done = tl, cancel, make(chan error, 1)
	go func() { e.done <- tl.Run(ctx) }()
	select {
	case <-tl.Started():
	case <-time.After(10 * time.Second):
		e.t.Fatal("tailer did not start")
	}
	e.t.Cleanup(func() { e.stop() })
	return tl
}

// stop stops the running Tailer and waits for it (idempotent).
func (e *tailEnv) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		e.t.Error("Run did not return after cancel")
	}
}

func (e *tailEnv) write(s string) {
	e.t.Helper()
	appendTo(e.t, e.path, s)
}

func appendTo(t testing.TB, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// settle waits until nothing new was published for 300 ms: the checks that
// follow it are for something that must not happen (a duplicate, a late
// record), which no condition can signal, so a quiet period stands in.
func (e *tailEnv) settle() {
	last, since := -1, time.Now()
	for time.Since(since) < 300*time.Millisecond {
		if n := len(e.pub.published()) + len(e.pub.deadLetters()); n != last {
			last, since = n, time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
}
