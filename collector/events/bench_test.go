package events

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// Benchmarks against the real API server (and Kafka). Run them with a fixed
// count, e.g.
//
//	go test -run '^$' -bench IntegrationEvents -benchtime 5000x ./collector/events/
//
// events/s is Events per second from the API server to the publisher's
// acknowledgement; latency is from the moment client-go's create returned
// to that acknowledgement.

// ackTimes wraps a publisher and stamps each acknowledged record ID.
type ackTimes struct {
	collector.Publisher
	mu sync.Mutex
	at map[string]time.Time
}

func newAckTimes(p collector.Publisher) *ackTimes {
	return &ackTimes{Publisher: p, at: map[string]time.Time{}}
}

func (a *ackTimes) Publish(ctx context.Context, recs []*record.Record) error {
	if err := a.Publisher.Publish(ctx, recs); err != nil {
		return err
	}
	now := time.Now()
	a.mu.Lock()
	for _, r := range recs {
		if _, ok := a.at[r.ID]; !ok {
			a.at[r.ID] = now
		}
	}
	a.mu.Unlock()
	return nil
}

func (a *ackTimes) count(want map[string]time.Time) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for id := range want {
		if _, ok := a.at[id]; ok {
			n++
		}
	}
	return n
}

// latencies returns the p50 and p99 of ack time − write time.
func (a *ackTimes) latencies(want map[string]time.Time) (p50, p99 time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var d []time.Duration
	for id, wrote := range want {
		if at, ok := a.at[id]; ok {
			d = append(d, max(at.Sub(wrote), 0))
		}
	}
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	return d[len(d)/2], d[len(d)*99/100]
}

func benchPublisher(b *testing.B, sink string) (collector.Publisher, func()) {
	switch sink {
	case "kafka":
		p, _, _ := realPublisher(b)
		return p, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = p.Close(ctx)
		}
	default:
		return newFakePublisher(), func() {}
	}
}

// BenchmarkIntegrationEventsLive: Events created through client-go (8
// writers) while the collector watches; the clock stops when the last one
// is acknowledged.
func BenchmarkIntegrationEventsLive(b *testing.B) {
	for _, sink := range []string{"fake", "kafka"} {
		b.Run(sink, func(b *testing.B) {
			restCfg, cs := realKube(b)
			ns := testNamespace(b, cs)
			inner, closePub := benchPublisher(b, sink)
			pub := newAckTimes(inner)
			cfg := realConfig(ns)
			cfg.APIs = []string{config.EventsAPIEventsV1}
			rc := startReal(b, restCfg, cfg, pub)
			testenv.WaitFor(b, "synced", 30*time.Second, rc.c.Synced)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			g := newLoadGen(cs, ns)

			b.ResetTimer()
			start := time.Now()
			if err := g.run(ctx, b.N, 8, func(int) int { return 0 }); err != nil {
				b.Fatal(err)
			}
			written := time.Since(start)
			want := g.wanted()
			testenv.WaitFor(b, "every Event acknowledged", 5*time.Minute, func() bool { return pub.count(want) == len(want) })
			elapsed := time.Since(start)
			b.StopTimer()

			p50, p99 := pub.latencies(want)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(b.N)/written.Seconds(), "writes/s")
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			rc.stop(b)
			closePub()
		})
	}
}

// BenchmarkIntegrationEventsBacklog: b.N Events exist before the collector
// starts (first start); the clock runs from Run to the acknowledgement of
// the last one — the collector's own rate, not the API server's write rate.
func BenchmarkIntegrationEventsBacklog(b *testing.B) {
	for _, sink := range []string{"fake", "kafka"} {
		b.Run(sink, func(b *testing.B) {
			restCfg, cs := realKube(b)
			ns := testNamespace(b, cs)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			g := newLoadGen(cs, ns)
			if err := g.run(ctx, b.N, 8, func(int) int { return 0 }); err != nil {
				b.Fatal(err)
			}
			want := g.wanted()
			inner, closePub := benchPublisher(b, sink)
			pub := newAckTimes(inner)
			cfg := realConfig(ns)
			cfg.APIs = []string{config.EventsAPIEventsV1}
			cfg.LeaderElection.Enabled = false

			b.ResetTimer()
			start := time.Now()
			rc := startReal(b, restCfg, cfg, pub)
			testenv.WaitFor(b, "every Event acknowledged", 5*time.Minute, func() bool { return pub.count(want) == len(want) })
			elapsed := time.Since(start)
			b.StopTimer()

			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			rc.stop(b)
			closePub()
		})
	}
}
