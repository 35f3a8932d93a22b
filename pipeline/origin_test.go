package pipeline

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/netorigin"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink"
)

// originSeen records the origin each record carried when the rules and
// the document builder read it.
type originSeen struct {
	mu    sync.Mutex
	rules map[string]netorigin.Origin
	docs  map[string]netorigin.Origin
}

type originRules struct{ s *originSeen }

func (o originRules) Eval(r *record.Record) []rules.Alert {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	o.s.rules[r.ID] = r.Origin
	return nil
}

type originDocs struct {
	fakeDocs
	s *originSeen
}

func (o originDocs) Record(r *record.Record) (sink.Doc, error) {
	o.s.mu.Lock()
	o.s.docs[r.ID] = r.Origin
	o.s.mu.Unlock()
	return o.fakeDocs.Record(r)
}

// TestProcessorResolvesOriginOnce: the processor resolves each audit
// record's origin before the rules run, and the document builder sees the
// same one: cluster networks and lists from its Resolver.
func TestProcessorResolvesOriginOnce(t *testing.T) {
	c := fakeKafka(t, 2)
	const topic, n = topicAudit, 40
	res, err := netorigin.New(netorigin.Options{
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/12")},
		Lists:        []netorigin.ListSpec{{Name: "corp", Networks: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/14")}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := &originSeen{rules: map[string]netorigin.Origin{}, docs: map[string]netorigin.Origin{}}
	pc := testProcessorConfig("origin")
	pc.Topics = []string{topic}
	p, err := New(Options{Kafka: testKafka(c.ListenAddrs()), Processor: pc, Rules: originRules{seen},
		Documents: originDocs{s: seen}, Origin: res, Writer: newFakeWriter(), Registerer: prometheus.NewRegistry(),
		Logger: testLogger(t), Transport: &kafka.Transport{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	produce(t, c.ListenAddrs(), topic, "origin", n)
	testenv.WaitFor(t, "every record's document built", 30*time.Second, func() bool {
		seen.mu.Lock()
		defer seen.mu.Unlock()
		return len(seen.docs) == n
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	classes := map[netorigin.Class]int{}
	listed := 0
	for id, o := range seen.docs {
		if r := seen.rules[id]; r.IP != o.IP || r.Class != o.Class || len(r.Lists) != len(o.Lists) {
			t.Errorf("%s: rules saw %+v, documents %+v", id, r, o)
		}
		classes[o.Class]++
		if slices.Contains(o.Lists, "corp") {
			listed++
		}
	}
	// pipelinetest.Audit(n) comes from 10.<n>.x.x: n < 16 is a cluster
	// address, 20-23 is on corp.
	if classes[netorigin.ClassCluster] != 16 || classes[netorigin.ClassPrivate] != n-16 || listed != 4 {
		t.Errorf("classes %v, %d on corp; want 16 cluster, %d private, 4 on corp", classes, n-16, listed)
	}
}
