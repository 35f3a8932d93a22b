package notify

import (
	"sort"
	"sync"
	"time"
)

// The end of a replay, and what a display shows of the deliveries: Flush
// sends every waiting group without waiting for its timers, Status tells
// what is still on its way and which integrations fail.

// Flush makes every group holding alerts due now and wakes the flush loop
// (Run), which sends them as their receivers' queues have room. It is for
// the end of an input (kubesift run's replay): no more alerts will come,
// so group_wait and group_interval have nothing left to wait for. Alerts
// added later wait their timers again.
func (d *Dispatcher) Flush() {
	now := d.now()
	d.mu.Lock()
	for _, g := range d.groups {
		if len(g.pending) > 0 && g.next.After(now) {
			g.next = now
		}
	}
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// DeliveryStatus is one integration's deliveries as they stand.
type DeliveryStatus struct {
	Integration string // e.g. "security/webhook[0]"
	// Queued notifications wait for the sender; Sending is 1 while one is
	// being delivered (its retries included), else 0.
	Queued, Sending int
	// Sent and Failed count finished notifications since the start.
	Sent, Failed int
	// Failing is true while the last attempt failed and none succeeded
	// since; LastError is that attempt's error — no URL and no key: the
	// notifiers strip them (stripURL, no response bodies from generic
	// receivers) — cut to maxStatusError bytes.
	Failing   bool
	LastError string
	// Since is when the integration began failing (zero when it is not).
	Since time.Time
}

// Pending is the integration's notifications not yet finished.
func (s DeliveryStatus) Pending() int { return s.Queued + s.Sending }

// maxStatusError bounds LastError: it is for a one-line display.
const maxStatusError = 200

// integStatus is the part of DeliveryStatus the sender keeps.
type integStatus struct {
	mu      sync.Mutex
	sending bool
	sent    int
	failed  int
	failing bool
	lastErr string
	since   time.Time
}

// begin: a notification is taken from the queue.
func (s *integStatus) begin() {
	s.mu.Lock()
	s.sending = true
	s.mu.Unlock()
}

// attempt records an attempt's error (nil: it succeeded).
func (s *integStatus) attempt(err error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.failing, s.since = false, time.Time{}
		return
	}
	if !s.failing {
		s.since = now
	}
	s.failing = true
	s.lastErr = err.Error()
	if len(s.lastErr) > maxStatusError {
		s.lastErr = s.lastErr[:maxStatusError] + "…"
	}
}

// end: the notification is finished (err nil: sent), or abandoned on
// shutdown (neither).
func (s *integStatus) end(err error, finished bool, now time.Time) {
	s.mu.Lock()
	s.sending = false
	s.mu.Unlock()
	if !finished {
		return
	}
	s.attempt(err, now)
	s.mu.Lock()
	if err == nil {
		s.sent++
	} else {
		s.failed++
	}
	s.mu.Unlock()
}

// Status returns the groups holding alerts not yet flushed and every
// integration's delivery status, by name.
func (d *Dispatcher) Status() (waitingGroups int, integrations []DeliveryStatus) {
	d.mu.Lock()
	for _, g := range d.groups {
		if len(g.pending) > 0 {
			waitingGroups++
		}
	}
	d.mu.Unlock()
	for _, qs := range d.queues {
		for _, q := range qs {
			q.st.mu.Lock()
			s := DeliveryStatus{Integration: q.integ.Name, Queued: len(q.ch), Sent: q.st.sent, Failed: q.st.failed,
				Failing: q.st.failing, LastError: q.st.lastErr, Since: q.st.since}
			if q.st.sending {
				s.Sending = 1
			}
			q.st.mu.Unlock()
			integrations = append(integrations, s)
		}
	}
	sort.Slice(integrations, func(i, j int) bool { return integrations[i].Integration < integrations[j].Integration })
	return waitingGroups, integrations
}
