package objects

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

var testCluster = record.Cluster{Name: "unit", UID: "ks-uid"}

// memPublisher keeps what was published, in order. While hold is non-nil,
// Publish waits for it to close: a publisher that is slow to acknowledge.
type memPublisher struct {
	mu   sync.Mutex
	recs []*record.Record
	dls  []collector.DeadLetter
	hold chan struct{}
	// entered is signalled when a Publish call starts waiting on hold.
	entered chan struct{}
	// next, when set, is the real publisher: a batch is kept only once it
	// acknowledged it.
	next collector.Publisher
}

func (p *memPublisher) Publish(ctx context.Context, recs []*record.Record) error {
	p.mu.Lock()
	hold := p.hold
	p.mu.Unlock()
	if hold != nil {
		select {
		case p.entered <- struct{}{}:
		default:
		}
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if p.next != nil {
		if err := p.next.Publish(ctx, recs); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recs = append(p.recs, recs...)
	return nil
}

func (p *memPublisher) PublishDeadLetters(ctx context.Context, dls []collector.DeadLetter) error {
	if p.next != nil {
		if err := p.next.PublishDeadLetters(ctx, dls); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dls = append(p.dls, dls...)
	return nil
}

func (p *memPublisher) records() []*record.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*record.Record(nil), p.recs...)
}

func (p *memPublisher) deadLetters() []collector.DeadLetter {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]collector.DeadLetter(nil), p.dls...)
}

// byKey returns the records published under key, in order.
func (p *memPublisher) byKey(key string) []*record.Record {
	var out []*record.Record
	for _, r := range p.records() {
		if r.Key == key {
			out = append(out, r)
		}
	}
	return out
}

func testConfig(kinds ...string) config.ObjectsConfig {
	c := config.DefaultObjectsConfig()
	c.Enabled = true
	c.Kinds = kinds
	c.LeaderElection.Enabled = false
	c.Batch.MaxWait = 10 * time.Millisecond
	return c
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("KUBESIFT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// servedVAP makes the fake discovery serve ValidatingAdmissionPolicies.
func servedVAP(cs *fake.Clientset) {
	cs.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{{
		GroupVersion: "admissionregistration.k8s.io/v1",
		APIResources: []metav1.APIResource{{Name: "validatingadmissionpolicies", Kind: "ValidatingAdmissionPolicy"}},
	}}
}

// running is a started Source; stop ends it and waits for Run.
type running struct {
	src  *Source
	reg  *prometheus.Registry
	stop func()
}

func start(t *testing.T, cfg config.ObjectsConfig, cs kubernetes.Interface, pub collector.Publisher) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	src, err := New(cfg, testCluster, cs, pub, nil, reg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	testenv.WaitFor(t, "leader with informers synced", 30*time.Second, func() bool { return src.IsLeader() && src.Ready() == nil })
	return &running{src: src, reg: reg, stop: stop}
}

func (r *running) metric(t testing.TB, name string, labels ...string) float64 {
	return testenv.Metric(t, r.reg, "kubesift_collector_objects_"+name, labels...)
}

func pod(ns, name, uid, rv string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid), ResourceVersion: rv,
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx:1.27"}}},
	}
}
