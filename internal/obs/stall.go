package obs

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Stalled sources.
//
// A source can be alive and still deliver nothing: a line it cannot get
// past, a publisher that refuses it for good. Its own readiness check
// ("started", "caches synced") stays green while its input piles up, so
// the outage shows only in a lag metric nobody alerts on. A StallWatch
// asks each source it watches how far it got and how much input waits
// behind that; a source with input waiting whose position has not moved for
// stall_after makes /readyz fail, naming the source, and sets the gauge
// kubesift_source_stalled{source} to 1. A source with nothing waiting is
// never stalled, however long it stays put.

// Progress is what a watched source reports.
type Progress struct {
	// Position is how far the source got: a file offset, a count of
	// records delivered — any number that changes when it advances.
	Position int64
	// Pending is how much input waits behind Position (bytes unread, items
	// queued); 0 means the source is idle, not stalled.
	Pending int64
}

// StallWatch turns the progress of sources into readiness checks.
type StallWatch struct {
	after   time.Duration
	ready   func(name string, err error)
	now     func() time.Time
	stalled *prometheus.GaugeVec

	mu      sync.Mutex
	sources map[string]*watched
}

type watched struct {
	probe func() Progress
	last  int64     // position seen at since
	since time.Time // when the position last moved, or input began to wait
}

// NewStallWatch builds a StallWatch that reports through ready (Server.SetReady)
// and registers kubesift_source_stalled on reg (nil: not registered). A
// source is stalled once it had input waiting and did not move for after.
func NewStallWatch(after time.Duration, reg prometheus.Registerer, ready func(name string, err error)) (*StallWatch, error) {
	if after <= 0 {
		return nil, fmt.Errorf("stall watch: stall_after must be positive, not %s", after)
	}
	w := &StallWatch{
		after: after, ready: ready, now: time.Now, sources: map[string]*watched{},
		stalled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kubesift_source_stalled",
			Help: "1 while a source has input waiting and its position has not moved for stall_after (its readiness check fails); 0 otherwise.",
		}, []string{"source"}),
	}
	if err := Register(reg, w.stalled); err != nil {
		return nil, fmt.Errorf("stall watch: register metrics: %w", err)
	}
	return w, nil
}

// Add watches the source name (also the name of its readiness check and
// the gauge's label) through probe, which must be cheap and safe to call
// from the watch's goroutine. The check starts ready.
func (w *StallWatch) Add(name string, probe func() Progress) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sources[name] = &watched{probe: probe, last: probe().Position, since: w.now()}
	w.stalled.WithLabelValues(name).Set(0)
	w.ready(name, nil)
}

// Check probes every source once and updates its readiness and gauge.
func (w *StallWatch) Check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	names := make([]string, 0, len(w.sources))
	for n := range w.sources {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := w.sources[n]
		p := s.probe()
		if p.Position != s.last || p.Pending <= 0 {
			// Moving, or idle: the clock restarts, so that input arriving
			// after a quiet hour is not taken for a stall.
			s.last, s.since = p.Position, now
		}
		if still := now.Sub(s.since); p.Pending > 0 && still >= w.after {
			w.stalled.WithLabelValues(n).Set(1)
			w.ready(n, fmt.Errorf("stalled: %d pending at position %d, which has not moved for %s (stall_after %s)",
				p.Pending, p.Position, still.Round(time.Second), w.after))
			continue
		}
		w.stalled.WithLabelValues(n).Set(0)
		w.ready(n, nil)
	}
}

// Run checks every source until ctx ends, often enough to notice a stall
// within a tenth of stall_after (at most every 10 s).
func (w *StallWatch) Run(ctx context.Context) error {
	t := time.NewTicker(min(max(w.after/10, 10*time.Millisecond), 10*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.Check()
		}
	}
}
