package pipeline

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
)

// TestBuiltProcessorReady: /readyz (BuiltProcessor.Ready) holds only when
// the record processor is a member of its group and, when the posture
// consumer runs, that one is a member with its partitions rebuilt.
func TestBuiltProcessorReady(t *testing.T) {
	tests := []struct {
		name               string
		processor, posture bool // members of their groups
		rebuilding         int64
		withPosture        bool
		want               string // "" for ready, else a part of the reason
	}{
		{"processor alone, a member", true, false, 0, false, ""},
		{"processor alone, not a member", false, false, 0, false, "not a member"},
		{"both members, posture rebuilt", true, true, 0, true, ""},
		{"posture still rebuilding", true, true, 2, true, "2 assigned partition(s) not rebuilt yet"},
		{"posture not a member", true, false, 0, true, "posture consumer: not a member"},
		{"processor not a member, posture ready", false, true, 0, true, "not a member of the consumer group yet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &BuiltProcessor{Processor: &Processor{}}
			b.Processor.ready.Store(tc.processor)
			if tc.withPosture {
				b.Posture = &PostureConsumer{}
				b.Posture.ready.Store(tc.posture)
				b.Posture.rebuilding.Store(tc.rebuilding)
			}
			err := b.Ready()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Ready: %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Ready: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestPostureReadyAfterRebuild: the posture consumer is a member of its
// group while its rebuild waits for the finding states, and reports not
// ready until the rebuild is done.
func TestPostureReadyAfterRebuild(t *testing.T) {
	kc := fakeKafka(t, 1, kfake.SeedTopics(1, topicObjects))
	brokers := kc.ListenAddrs()
	ow := newObjectsWriter(t, brokers, topicObjects)
	ow.put("prod", "v1", "Namespace", "", "shop", "ns-uid", "10", namespaceJSON("shop"))

	ff := newFakeFindings()
	asked := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	states := func(ctx context.Context, cluster string) ([]posture.Decision, error) {
		once.Do(func() { close(asked) })
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return ff.States(ctx, cluster)
	}
	set, err := rules.New(rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := runPosture(t, brokers, "posture-ready", posture.New(set.Set()), ff, states, prometheus.NewRegistry())

	select {
	case <-asked: // a member, its rebuild restoring the cluster
	case <-time.After(20 * time.Second):
		t.Fatal("the rebuild never asked for the finding states")
	}
	if err := c.Ready(); err == nil || !strings.Contains(err.Error(), "not rebuilt yet") {
		t.Errorf("Ready during the rebuild: %v, want not rebuilt yet", err)
	}
	close(release)
	testenv.WaitForNil(t, "posture consumer ready after its rebuild", 20*time.Second, c.Ready)
	if s := ff.state("prod", "posture-namespace-without-network-policy", "ns-uid"); s != posture.StateOpen {
		t.Errorf("namespace finding %q once ready, want open: ready means rebuilt", s)
	}
}

// runPosture runs a posture consumer of group with engine eng on the fake
// cluster until the test ends, reading the finding states with states;
// it does not wait for the consumer to be ready.
func runPosture(t *testing.T, brokers []string, group string, eng *posture.Engine, ff *fakeFindings, states StateReader, reg *prometheus.Registry) *PostureConsumer {
	t.Helper()
	pc := testProcessorConfig("records-" + group)
	pc.Posture = config.ProcessorPostureConfig{Enabled: true, GroupID: group, AlertSeverity: "high", ScoreInterval: 100 * time.Millisecond}
	c, err := NewPosture(PostureOptions{Kafka: testKafka(brokers), Processor: pc, Engine: eng,
		Findings: ff, States: states, Documents: fakeDocs{}, Writer: newFakeWriter(), Registerer: reg, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("posture Run: %v", err)
		}
	})
	return c
}
