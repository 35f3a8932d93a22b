package sources

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/collector/audittail"
	"github.com/kubesift/kubesift/collector/auditwebhook"
	"github.com/kubesift/kubesift/collector/events"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/lifecycle"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// memPublisher keeps what it is given, with the view (For) it came through.
type memPublisher struct {
	mu   sync.Mutex
	recs []string // origin/record ID
}

func (p *memPublisher) For(source string) collector.Publisher { return &memView{p, source} }

func (p *memPublisher) Publish(ctx context.Context, recs []*record.Record) error {
	return (&memView{p, "-"}).Publish(ctx, recs)
}

func (p *memPublisher) PublishDeadLetters(context.Context, []collector.DeadLetter) error { return nil }

func (p *memPublisher) got() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.recs)
}

type memView struct {
	p      *memPublisher
	origin string
}

func (v *memView) Publish(_ context.Context, recs []*record.Record) error {
	v.p.mu.Lock()
	defer v.p.mu.Unlock()
	for _, r := range recs {
		v.p.recs = append(v.p.recs, v.origin+"/"+r.ID)
	}
	return nil
}

func (v *memView) PublishDeadLetters(context.Context, []collector.DeadLetter) error { return nil }

// readiness records what New and the sources report through SetReady.
type readiness struct {
	mu    sync.Mutex
	state map[string]error
}

func (r *readiness) set(name string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == nil {
		r.state = map[string]error{}
	}
	r.state[name] = err
}

// ready reports whether name was reported, and ready.
func (r *readiness) ready(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	err, ok := r.state[name]
	return ok && err == nil
}

const auditLine = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"%s","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{"username":"alice"},"requestReceivedTimestamp":"2026-01-02T03:04:05.000000Z","stageTimestamp":"2026-01-02T03:04:05.100000Z"}`

// collectorConfig is a collector: section with the audit webhook and the
// tail configured (not enabled) on files in dir.
func collectorConfig(t *testing.T, dir string) config.CollectorConfig {
	t.Helper()
	certFile, keyFile, _ := testenv.SelfSigned(t, dir)
	cc := config.Default().Collector
	w := &cc.AuditWebhook
	w.Listen, w.TLSCertFile, w.TLSKeyFile, w.BearerToken = testenv.FreeAddr(t), certFile, keyFile, "hook-token"
	a := &cc.AuditTail
	a.Paths, a.PositionsFile = []string{filepath.Join(dir, "audit.log")}, filepath.Join(dir, "positions.yaml")
	a.StartAt, a.PollInterval, a.BatchWait = "beginning", 20*time.Millisecond, 20*time.Millisecond
	return cc
}

func testOptions(t *testing.T, cc config.CollectorConfig, pub collector.Publisher, r *readiness) Options {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	san, err := redact.New(cc.Redaction, cc.Size, cc.DeadLetterMaxBytes, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	return Options{Config: cc, Cluster: record.Cluster{Name: "test-cluster", UID: "uid-1"}, Sanitizer: san,
		Publisher: pub, SetReady: r.set, Logger: log}
}

func names(srcs []Source) []string {
	var out []string
	for _, s := range srcs {
		out = append(out, s.Name)
	}
	return out
}

func TestNewBuildsTheEnabledSourcesInOrder(t *testing.T) {
	tests := []struct {
		name            string
		webhook, tail   bool
		want            []string
		wantReady       []string // ready once New returns
		wantNotReadyYet []string
	}{
		{name: "none"},
		{name: "webhook", webhook: true, want: []string{auditwebhook.Source}, wantReady: []string{auditwebhook.Source}},
		{name: "tail", tail: true, want: []string{audittail.Source, StallWatch}, wantNotReadyYet: []string{audittail.Source}},
		{name: "both", webhook: true, tail: true, want: []string{auditwebhook.Source, audittail.Source, StallWatch},
			wantReady: []string{auditwebhook.Source}, wantNotReadyYet: []string{audittail.Source}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cc := collectorConfig(t, t.TempDir())
			cc.AuditWebhook.Enabled, cc.AuditTail.Enabled = tc.webhook, tc.tail
			r := &readiness{}
			srcs, err := New(testOptions(t, cc, &memPublisher{}, r))
			if err != nil {
				t.Fatal(err)
			}
			// Release the webhook's port: these sources never run.
			if tc.webhook {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				_ = srcs[0].Run(ctx)
			}
			if got := names(srcs); !slices.Equal(got, tc.want) {
				t.Errorf("sources = %v, want %v", got, tc.want)
			}
			for _, n := range tc.wantReady {
				if !r.ready(n) {
					t.Errorf("%s not ready", n)
				}
			}
			for _, n := range tc.wantNotReadyYet {
				if r.ready(n) {
					t.Errorf("%s ready before it ran", n)
				}
			}
		})
	}
}

func TestNewNamesTheFieldAtFault(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	tests := []struct {
		name   string
		change func(*config.CollectorConfig)
		want   string
	}{
		{"webhook port taken", func(cc *config.CollectorConfig) {
			cc.AuditWebhook.Enabled, cc.AuditWebhook.Listen = true, taken.Addr().String()
		}, "collector.audit_webhook.listen"},
		{"stall_after not positive", func(cc *config.CollectorConfig) {
			cc.AuditTail.Enabled, cc.AuditTail.StallAfter = true, 0
		}, "collector.audit_tail.stall_after"},
		{"events without API access", func(cc *config.CollectorConfig) {
			cc.Events.Enabled = true
		}, "collector.events needs API access"},
		{"events with a kubeconfig that is not there", func(cc *config.CollectorConfig) {
			cc.Events.Enabled, cc.Kubeconfig = true, "/nonexistent/kubeconfig"
		}, "collector.events: "},
	}
	// Without a kubeconfig, API access is the pod's; this test is no pod.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cc := collectorConfig(t, t.TempDir())
			tc.change(&cc)
			_, err := New(testOptions(t, cc, &memPublisher{}, &readiness{}))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to name %q", err, tc.want)
			}
		})
	}
}

// TestNewReleasesTheWebhookPortOnError: a source that fails to build after
// the webhook bound its port must not leave the port taken, or a caller
// that retries the start (or a test that builds again) finds it in use.
func TestNewReleasesTheWebhookPortOnError(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	cc := collectorConfig(t, t.TempDir())
	cc.AuditWebhook.Enabled = true
	cc.Events.Enabled = true // no API access: fails after the webhook
	if _, err := New(testOptions(t, cc, &memPublisher{}, &readiness{})); err == nil {
		t.Fatal("New succeeded without API access for collector.events")
	}
	ln, err := net.Listen("tcp", cc.AuditWebhook.Listen)
	if err != nil {
		t.Fatalf("the webhook's port is still taken: %v", err)
	}
	ln.Close()
}

// TestTailSourcePublishesThroughItsViewAndGetsReady runs the built tail
// under a lifecycle group, as collect does: it must report ready once it
// opened its file, and publish through the publisher's audit-tail view.
func TestTailSourcePublishesThroughItsViewAndGetsReady(t *testing.T) {
	dir := t.TempDir()
	cc := collectorConfig(t, dir)
	cc.AuditTail.Enabled = true
	if err := os.WriteFile(cc.AuditTail.Paths[0], []byte(fmt.Sprintf(auditLine, "tail-1")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pub, r := &memPublisher{}, &readiness{}
	srcs, err := New(testOptions(t, cc, pub, r))
	if err != nil {
		t.Fatal(err)
	}
	g := lifecycle.New(nil)
	for _, s := range srcs {
		g.Add(s.Name, s.Run)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	testenv.WaitFor(t, "the tail ready", 10*time.Second, func() bool { return r.ready(audittail.Source) })
	testenv.WaitFor(t, "the record through the audit-tail view", 10*time.Second, func() bool {
		return slices.Contains(pub.got(), audittail.Source+"/tail-1:ResponseComplete")
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("group: %v", err)
	}
}

// TestEventsSourceAgainstTheAPIServer builds the Events source from a
// kubeconfig for the test ground's kube-apiserver, as a deployment with
// collector.kubeconfig does, and runs it: it must become ready and publish
// an Event created in its namespace through the events view.
func TestEventsSourceAgainstTheAPIServer(t *testing.T) {
	testenv.Short(t)
	kubeconfig := testenv.Need(t, "kube", "KUBESIFT_KUBECONFIG_ADMIN")[0]
	cs := testenv.NewKubeClient(t, "kubesift-test").CS
	// The source watches one Event of its own, so the other tests' Events
	// on the shared API server do not reach it.
	var b [4]byte
	_, _ = rand.Read(b[:])
	ns, name := "default", "kubesift-sources-"+hex.EncodeToString(b[:])
	t.Cleanup(func() {
		_ = cs.CoreV1().Events(ns).Delete(context.Background(), name, metav1.DeleteOptions{})
	})

	cc := collectorConfig(t, t.TempDir())
	cc.Kubeconfig = kubeconfig
	ev := &cc.Events
	ev.Enabled, ev.Namespaces, ev.FieldSelector = true, []string{ns}, "metadata.name="+name
	// One replica, and nothing written to the cluster but the test's Event.
	ev.LeaderElection.Enabled, ev.Watermark.Enabled = false, false
	pub, r := &memPublisher{}, &readiness{}
	srcs, err := New(testOptions(t, cc, pub, r))
	if err != nil {
		t.Fatal(err)
	}
	if got := names(srcs); !slices.Equal(got, []string{events.Source}) {
		t.Fatalf("sources = %v", got)
	}
	g := lifecycle.New(nil)
	g.Add(srcs[0].Name, srcs[0].Run)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	testenv.WaitFor(t, "the Events source ready", 30*time.Second, func() bool { return r.ready(events.Source) })

	now := metav1.NewTime(time.Now())
	created, err := cs.CoreV1().Events(ns).Create(context.Background(), &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: ns, Name: name},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: ns, Name: "web-0"},
		Reason:         "BackOff", Message: "back-off restarting failed container", Type: corev1.EventTypeWarning,
		Count: 1, FirstTimestamp: now, LastTimestamp: now, Source: corev1.EventSource{Component: "kubelet"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := events.Source + "/" + string(created.UID) + ":1"
	testenv.WaitFor(t, "the Event through the events view", 30*time.Second, func() bool {
		return slices.Contains(pub.got(), want)
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("group: %v", err)
	}
}
