// Package backoff is the one retry schedule of kubesift: capped exponential
// backoff, with or without equal jitter. The sinks (sink.Do, the
// Elasticsearch writer, the ndjson store, the notifiers), the processor's
// producer, the replayer, the Events session and the audit tail all space
// their retries with it, so they are read and tuned in one place.
//
// The schedule: the n-th wait (1-based) is Initial doubled n-1 times, capped
// at Max. Wait draws it with equal jitter, uniformly from [d/2, d]: replicas
// (or sources) that failed together do not retry in step, and no wait is
// shorter than half the schedule, so a refusing server is never hammered.
// Delay is the schedule without jitter, for a caller that is the only
// client of what it waits for (the audit tail's one publisher).
//
// It sits under internal, below rules, sink and collector, so that sibling
// rooms share it without importing each other.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Defaults of a zero Policy.
const (
	DefaultInitial = 100 * time.Millisecond
	DefaultMax     = 30 * time.Second
)

// Policy is a capped exponential schedule; each caller keeps its own retry
// loop and context handling. The zero value waits 100ms
// doubling to 30s and never gives up.
type Policy struct {
	// Initial is the first wait (default DefaultInitial).
	Initial time.Duration
	// Max caps every wait (default DefaultMax).
	Max time.Duration
	// Attempts bounds the tries, the first included; 0 means until the
	// caller's context ends. Policy only carries it: the retry loop (sink.Do)
	// enforces it.
	Attempts int
}

// Delay returns the wait before retry number n (1-based) without jitter:
// Initial doubled n-1 times, capped at Max. n < 1 counts as 1.
func (p Policy) Delay(n int) time.Duration {
	initial, maxWait := p.Initial, p.Max
	if initial <= 0 {
		initial = DefaultInitial
	}
	if maxWait <= 0 {
		maxWait = DefaultMax
	}
	d := initial
	for i := 1; i < n && d < maxWait; i++ {
		d *= 2
	}
	return min(d, maxWait)
}

// Wait returns the wait before retry number n (1-based) with equal jitter:
// uniform in [Delay(n)/2, Delay(n)].
func (p Policy) Wait(n int) time.Duration {
	return Jitter(p.Delay(n))
}

// Jitter returns a uniform draw from [d/2, d] (equal jitter).
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}
