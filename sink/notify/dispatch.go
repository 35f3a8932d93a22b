package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/match"
	"github.com/kubesift/kubesift/rules"
)

// State is an alert's delivery state, as indexed in kubesift.delivery.state.
type State string

// The delivery states. A new alert document is indexed by the processor
// with state "pending" (sink/ecs.DeliveryPending); the dispatcher reports
// every later one.
const (
	// StateGrouped: routed into an aggregation group; reason is the
	// receiver and group key.
	StateGrouped State = "grouped"
	// StateSilenced: muted by a silence; reason names it.
	StateSilenced State = "silenced"
	// StateInhibited: muted by an inhibit rule; reason names the source.
	StateInhibited State = "inhibited"
	// StateDelivered: a receiver's integration accepted a notification
	// reporting the alert; reason names the integration.
	StateDelivered State = "delivered"
	// StateFailed: an integration refused the notification for good or
	// retries gave up; reason says which and why (never a URL or key).
	StateFailed State = "failed"
)

// StateSink learns every state change of every alert, so that the caller
// can index it. AlertState is called from the dispatcher's goroutines and
// must not block for long (queue the update).
type StateSink interface {
	AlertState(alertID string, s State, reason string)
}

// StateFunc adapts a function to StateSink.
type StateFunc func(alertID string, s State, reason string)

// AlertState calls f.
func (f StateFunc) AlertState(id string, s State, reason string) { f(id, s, reason) }

// Muter decides whether an alert is muted at time now, and why. Silences
// and the inhibitor implement it.
type Muter interface {
	Mutes(l match.Labels, a *rules.Alert, now time.Time) (reason string, muted bool)
}

// Integration is one configured destination of a receiver.
type Integration struct {
	// Name identifies it in logs, metrics and delivery reasons, e.g.
	// "security/slack[0]"; it never contains the URL.
	Name     string
	Notifier Notifier
	// SendResolved: the integration also gets a group's resolved
	// notification (Notification.Resolved).
	SendResolved bool
}

// Options configure a Dispatcher.
type Options struct {
	Route *Route
	// Receivers maps each receiver name of the tree to its integrations.
	Receivers map[string][]Integration
	// Silences and Inhibitor mute alerts (either may be nil).
	Silences  Muter
	Inhibitor *Inhibitor
	// States, if set, learns every state change.
	States StateSink
	// MaxGroups caps the aggregation groups; MaxAlertsPerGroup the alerts
	// a group keeps per notification (the rest are counted); QueueSize
	// bounds each integration's queue.
	MaxGroups, MaxAlertsPerGroup, QueueSize int
	// Backoff and GiveUpAfter configure the retry stage.
	Backoff     backoff.Policy
	GiveUpAfter time.Duration
	// Now is the clock (tests); nil means time.Now.
	Now     func() time.Time
	Log     *slog.Logger
	Metrics *Metrics
}

// Dispatcher routes alerts into aggregation groups and sends each group's
// notifications to its receiver's integrations, like Alertmanager's
// dispatcher and notification pipeline in one.
//
// # Timers
//
// A new group waits group_wait, then sends every alert it took. After a
// notification, alerts that arrive go into the next one, sent group_interval
// after the previous. A group that took no alert for repeat_interval is
// closed (kubesift alerts are events: nothing is re-sent). Silences and
// inhibition are checked when a group is flushed, so a silence created
// during group_wait still applies.
//
// # Resolution
//
// An event has no end, so a group "resolves" when it goes quiet: once it
// has taken no alert and sent nothing for its route's resolve_timeout (and
// at the latest when repeat_interval closes it), a group that sent a
// notification since it last resolved sends one more, with Resolved set
// and the alerts it reported since then, to the integrations with
// SendResolved — so a PagerDuty incident or Opsgenie alert opened by the
// group is closed. A group that takes an alert after resolving fires
// again. Only receivers with such an integration keep the last alerts. A
// group evicted with alerts pending, or held by a notifier that stops, is
// not resolved.
//
// # Done
//
// Add's done is called exactly once, when the alert is final everywhere it
// was routed: every notification reporting it was delivered or failed for
// good, or it was muted, or it was a duplicate (the same ID already in the
// group). A Kafka consumer commits the alert's offset only then, so alerts
// not yet delivered when the process dies are re-read and re-sent (with the
// same idempotency key when they are flushed together again). When Run's
// context ends, done is not called for what is still pending.
type Dispatcher struct {
	opt    Options
	now    func() time.Time
	log    *slog.Logger
	m      *Metrics
	queues map[string][]*integQueue // by receiver
	// resolvers are the queues of integrations with SendResolved.
	resolvers map[string][]*integQueue // by receiver

	mu       sync.Mutex
	groups   map[string]*aggrGroup
	nextWake time.Time // earliest deadline as of the last tick
	wake     chan struct{}
}

type integQueue struct {
	receiver string
	integ    Integration
	ch       chan *queued
	st       integStatus // Status's view of its sender
}

// queued is one notification for one integration, with the alert refs it
// releases when finished.
type queued struct {
	n    *Notification
	refs []*alertRef
	q    *integQueue
}

// alertRef counts the places an alert is still pending in.
type alertRef struct {
	n    atomic.Int32
	done func()
}

func (r *alertRef) add(n int) { r.n.Add(int32(n)) }

func (r *alertRef) release() {
	if r.n.Add(-1) == 0 && r.done != nil {
		r.done()
	}
}

// aggrGroup is one aggregation group.
type aggrGroup struct {
	key     string
	route   *Route
	labels  map[string]string
	pending []entry // since the last flush
	kept    int     // entries in pending with an alert
	seen    dedup
	total   int
	seq     int
	// next is the flush deadline while pending is not empty.
	next       time.Time
	lastFlush  time.Time
	lastActive time.Time
	// firing: a notification was flushed since the group last resolved;
	// lastAlerts (the newest MaxAlertsPerGroup) and lastCount are what
	// the notifications since then reported, kept only when the receiver
	// has resolvers.
	firing     bool
	lastAlerts []rules.Alert
	lastCount  int
}

// entry is one alert in a group; alert is nil for alerts beyond
// MaxAlertsPerGroup, which are only counted.
type entry struct {
	id     string
	alert  *rules.Alert
	labels match.Labels
	ref    *alertRef
}

// queueFullRetry is how soon a group postponed for a full queue is tried
// again.
const queueFullRetry = 100 * time.Millisecond

// countedMax bounds counted-only entries per group and flush (their IDs
// and refs), as a multiple of MaxAlertsPerGroup. Past it an alert is
// final at once: counted, reported grouped, done.
const countedFactor = 100

// New builds a dispatcher. Call Run to start it.
func New(opt Options) (*Dispatcher, error) {
	if opt.Route == nil {
		return nil, errors.New("notify: no route")
	}
	if opt.MaxGroups <= 0 || opt.MaxAlertsPerGroup <= 0 || opt.QueueSize <= 0 {
		return nil, errors.New("notify: MaxGroups, MaxAlertsPerGroup and QueueSize must be positive")
	}
	d := &Dispatcher{opt: opt, now: opt.Now, log: opt.Log, m: opt.Metrics, queues: map[string][]*integQueue{},
		resolvers: map[string][]*integQueue{}, groups: map[string]*aggrGroup{}, wake: make(chan struct{}, 1)}
	if d.now == nil {
		d.now = time.Now
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.m == nil {
		d.m, _ = NewMetrics(nil)
	}
	var check func(r *Route) error
	check = func(r *Route) error {
		if len(opt.Receivers[r.Receiver]) == 0 {
			return fmt.Errorf("notify: receiver %q of route %s has no integrations", r.Receiver, r.key)
		}
		for _, c := range r.Routes {
			if err := check(c); err != nil {
				return err
			}
		}
		return nil
	}
	if err := check(opt.Route); err != nil {
		return nil, err
	}
	for name, ints := range opt.Receivers {
		for _, in := range ints {
			q := &integQueue{receiver: name, integ: in, ch: make(chan *queued, opt.QueueSize)}
			d.queues[name] = append(d.queues[name], q)
			if in.SendResolved {
				d.resolvers[name] = append(d.resolvers[name], q)
			}
			d.m.integration(in.Name)
		}
	}
	return d, nil
}

type stateChange struct {
	id     string
	s      State
	reason string
}

func (d *Dispatcher) report(cs []stateChange) {
	for _, c := range cs {
		d.m.alerts.WithLabelValues(string(c.s)).Inc()
		if d.opt.States != nil {
			d.opt.States.AlertState(c.id, c.s, c.reason)
		}
	}
}

// Add routes one alert into its groups. It does not wait for delivery;
// done (may be nil) says when the alert is final (see the type's doc). It
// blocks only when a group evicted to make room has to be flushed into a
// full queue, and returns an error only when ctx ends then.
func (d *Dispatcher) Add(ctx context.Context, a rules.Alert, done func()) error {
	l := Labels(&a)
	if d.opt.Inhibitor != nil {
		d.opt.Inhibitor.Observe(&a, l)
	}
	routes := d.opt.Route.Match(l)
	ref := &alertRef{done: done}
	ref.add(1) // Add's own hold, released at the end
	now := d.now()
	var states []stateChange
	var out []*queued

	d.mu.Lock()
	wake := false
	for _, r := range routes {
		gl := r.groupLabels(l)
		key := r.groupKey(gl)
		g := d.groups[key]
		if g == nil {
			if len(d.groups) >= d.opt.MaxGroups {
				var cs []stateChange
				out, cs = d.evictLocked(now, out)
				states = append(states, cs...)
			}
			g = &aggrGroup{key: key, route: r, labels: gl, next: now.Add(r.GroupWait), seen: newDedup(d.dedupSize())}
			d.groups[key] = g
			d.m.groups.Set(float64(len(d.groups)))
		}
		if !g.seen.add(a.ID) {
			// The same alert twice (a Kafka re-delivery, or the processor
			// retrying a produce) is one alert.
			d.m.alerts.WithLabelValues(outcomeDuplicate).Inc()
			continue
		}
		if len(g.pending) == 0 {
			// The first alert after a flush waits for the next interval.
			g.next = now.Add(r.GroupWait)
			if !g.lastFlush.IsZero() {
				g.next = maxTime(g.lastFlush.Add(r.GroupInterval), now)
			}
		}
		g.total++
		g.lastActive = now
		e := entry{id: a.ID, ref: ref}
		switch {
		case g.kept < d.opt.MaxAlertsPerGroup:
			e.alert, e.labels = &a, l
			g.kept++
		case len(g.pending) >= d.opt.MaxAlertsPerGroup*countedFactor:
			// Beyond every bound: counted, final now.
			states = append(states, stateChange{a.ID, StateGrouped, "counted only (group overflow): " + r.Receiver + " " + key})
			d.m.alerts.WithLabelValues(outcomeOverflow).Inc()
			d.overflowLocked(g)
			continue
		default:
			// Counted only; muting is decided now, while the labels are here.
			if reason, muted, s := d.muted(l, &a, now); muted {
				states = append(states, stateChange{a.ID, s, reason})
				continue
			}
		}
		ref.add(1)
		g.pending = append(g.pending, e)
		states = append(states, stateChange{a.ID, StateGrouped, r.Receiver + " " + key})
		if d.nextWake.IsZero() || g.next.Before(d.nextWake) {
			wake = true
		}
	}
	d.mu.Unlock()

	d.report(states)
	if wake {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
	err := d.push(ctx, out)
	ref.release()
	return err
}

// overflowLocked counts one alert in g without keeping it.
func (d *Dispatcher) overflowLocked(g *aggrGroup) {
	// Represented by an entry without id or ref, so the next notification's
	// Count includes it.
	g.pending = append(g.pending, entry{})
}

func (d *Dispatcher) dedupSize() int { return max(10*d.opt.MaxAlertsPerGroup, 10000) }

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// muted asks the silences, then the inhibitor.
func (d *Dispatcher) muted(l match.Labels, a *rules.Alert, now time.Time) (string, bool, State) {
	if d.opt.Silences != nil {
		if reason, ok := d.opt.Silences.Mutes(l, a, now); ok {
			return reason, true, StateSilenced
		}
	}
	if d.opt.Inhibitor != nil {
		if reason, ok := d.opt.Inhibitor.Mutes(l, a, now); ok {
			return reason, true, StateInhibited
		}
	}
	return "", false, ""
}

// evictLocked makes room for one group: the least recently active one is
// flushed now (if it holds alerts) and dropped.
func (d *Dispatcher) evictLocked(now time.Time, out []*queued) ([]*queued, []stateChange) {
	var victim *aggrGroup
	for _, g := range d.groups {
		if victim == nil || g.lastActive.Before(victim.lastActive) {
			victim = g
		}
	}
	if victim == nil {
		return out, nil
	}
	d.m.evictions.Inc()
	d.log.Warn("notify: aggregation group evicted (notify.max_groups reached); flushed early", "group", victim.key)
	var cs []stateChange
	if len(victim.pending) > 0 {
		var q []*queued
		q, cs = d.flushLocked(victim, now)
		out = append(out, q...)
	} else if victim.firing {
		// Idle, so resolved like any group that closes; a victim flushed
		// just now is not, or its incident would close as it opens.
		out = append(out, d.resolveLocked(victim, now)...)
	}
	delete(d.groups, victim.key)
	return out, cs
}

// flushLocked turns g's pending alerts into one notification per
// integration of its receiver.
func (d *Dispatcher) flushLocked(g *aggrGroup, now time.Time) ([]*queued, []stateChange) {
	pending := g.pending
	g.pending, g.kept, g.next, g.lastFlush = nil, 0, time.Time{}, now
	var states []stateChange
	var alerts []rules.Alert
	var ids []string
	var refs []*alertRef
	count := 0
	for _, e := range pending {
		if e.alert != nil {
			if reason, muted, s := d.muted(e.labels, e.alert, now); muted {
				states = append(states, stateChange{e.id, s, reason})
				e.ref.release()
				continue
			}
			alerts = append(alerts, *e.alert)
		}
		count++
		if e.id != "" {
			ids = append(ids, e.id)
			refs = append(refs, e.ref)
		}
	}
	if count == 0 {
		return nil, states
	}
	sort.SliceStable(alerts, func(i, j int) bool { return alerts[i].Time.Before(alerts[j].Time) })
	g.seq++
	n := &Notification{
		Receiver: g.route.Receiver, GroupKey: g.key, GroupLabels: g.labels, Alerts: alerts,
		Count: count, Total: g.total, Seq: g.seq, Time: now, ids: ids,
		IdempotencyKey: IdempotencyKey(g.route.Receiver, g.key, ids),
	}
	if len(d.resolvers[g.route.Receiver]) > 0 {
		// All of them, not just this notification's: Alertmanager keeps an
		// alert per label set, and each must be resolved.
		g.firing, g.lastCount = true, g.lastCount+count
		g.lastAlerts = append(g.lastAlerts, alerts...)
		if over := len(g.lastAlerts) - d.opt.MaxAlertsPerGroup; over > 0 {
			g.lastAlerts = append([]rules.Alert(nil), g.lastAlerts[over:]...)
		}
	}
	qs := d.queues[g.route.Receiver]
	out := make([]*queued, 0, len(qs))
	for _, r := range refs {
		// One hold per integration, minus the group's.
		r.add(len(qs) - 1)
	}
	for _, q := range qs {
		out = append(out, &queued{n: n, refs: refs, q: q})
	}
	return out, states
}

// resolveLocked builds g's resolved notification for the receiver's
// resolvers. It reports no alert IDs: its alerts are final already, and
// its outcome must not change their delivery state.
func (d *Dispatcher) resolveLocked(g *aggrGroup, now time.Time) []*queued {
	ids := make([]string, len(g.lastAlerts))
	for i := range g.lastAlerts {
		ids[i] = g.lastAlerts[i].ID
	}
	n := &Notification{
		Receiver: g.route.Receiver, GroupKey: g.key, GroupLabels: g.labels, Alerts: g.lastAlerts,
		Count: g.lastCount, Total: g.total, Seq: g.seq, Time: now, Resolved: true,
		// Distinct from the key of the notification that reported the
		// same alerts: group keys start with "{", never with "resolved".
		IdempotencyKey: IdempotencyKey(g.route.Receiver, "resolved"+g.key, ids),
	}
	g.firing, g.lastAlerts, g.lastCount = false, nil, 0
	qs := d.resolvers[g.route.Receiver]
	out := make([]*queued, 0, len(qs))
	for _, q := range qs {
		out = append(out, &queued{n: n, q: q})
	}
	return out
}

// tick flushes every due group, resolves and closes idle ones, and returns
// the earliest deadline left (zero: none).
func (d *Dispatcher) tick(ctx context.Context, now time.Time) (time.Time, error) {
	var out []*queued
	var states []stateChange
	var next time.Time
	// A group is flushed only if every queue of its receiver has room for
	// it (counting what this pass already queued): a receiver that is down
	// and has filled its queues postpones its own groups, instead of
	// blocking the flush of every other receiver's. Only senders take from
	// the queues, so the room found here cannot shrink before push.
	reserved := map[*integQueue]int{}
	room := func(qs []*integQueue) bool {
		for _, q := range qs {
			if len(q.ch)+reserved[q] >= cap(q.ch) {
				return false
			}
		}
		for _, q := range qs {
			reserved[q]++
		}
		return true
	}
	d.mu.Lock()
	for key, g := range d.groups {
		if len(g.pending) > 0 && !g.next.After(now) {
			if room(d.queues[g.route.Receiver]) {
				q, cs := d.flushLocked(g, now)
				out, states = append(out, q...), append(states, cs...)
			} else {
				g.next = now.Add(queueFullRetry)
				d.m.postponed.Inc()
			}
		}
		var deadline time.Time
		if len(g.pending) > 0 {
			deadline = g.next
		} else {
			deadline = g.lastActive.Add(g.route.RepeatInterval)
			if g.firing {
				resolveAt := minTime(deadline, maxTime(g.lastActive, g.lastFlush).Add(g.route.ResolveTimeout))
				switch {
				case resolveAt.After(now):
					deadline = resolveAt
				case room(d.resolvers[g.route.Receiver]):
					out = append(out, d.resolveLocked(g, now)...)
				default:
					deadline = now.Add(queueFullRetry)
					d.m.postponed.Inc()
				}
			}
			if !g.firing && !deadline.After(now) {
				delete(d.groups, key)
				continue
			}
		}
		if next.IsZero() || deadline.Before(next) {
			next = deadline
		}
	}
	d.nextWake = next
	d.m.groups.Set(float64(len(d.groups)))
	d.mu.Unlock()
	d.report(states)
	return next, d.push(ctx, out)
}

// push hands notifications to their integration queues, waiting while a
// queue is full: that wait is the backpressure on the caller.
func (d *Dispatcher) push(ctx context.Context, out []*queued) error {
	for _, q := range out {
		select {
		case q.q.ch <- q:
		case <-ctx.Done():
			// Not queued: nothing will release these refs, so the alerts'
			// done is never called and their offsets stay uncommitted.
			return ctx.Err()
		}
	}
	return nil
}

// Run starts one sender per integration and the flush loop, and returns
// when ctx ends (after the senders stopped).
func (d *Dispatcher) Run(ctx context.Context) error {
	defer d.startSenders(ctx)()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, err := d.tick(ctx, d.now())
		if err != nil {
			return nil // ctx ended
		}
		wait := time.Minute
		if !next.IsZero() {
			wait = min(max(time.Until(next), 0), time.Minute)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-d.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
	}
}

// startSenders starts one sender per integration; the returned function
// waits for them to stop (after ctx ended).
func (d *Dispatcher) startSenders(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	for _, qs := range d.queues {
		for _, q := range qs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.send(ctx, q)
			}()
		}
	}
	return wg.Wait
}

// send delivers one integration's queue in order through the retry stage.
func (d *Dispatcher) send(ctx context.Context, q *integQueue) {
	for {
		select {
		case <-ctx.Done():
			return
		case item := <-q.ch:
			d.deliver(ctx, q, item)
		}
	}
}

func (d *Dispatcher) deliver(ctx context.Context, q *integQueue, item *queued) {
	q.st.begin()
	rctx, cancel := context.WithTimeout(ctx, d.opt.GiveUpAfter)
	if d.opt.GiveUpAfter <= 0 {
		rctx, cancel = context.WithCancel(ctx)
	}
	err := Retry(rctx, d.opt.Backoff, q.integ.Notifier, item.n, func(attempt int, err error) {
		q.st.attempt(err, d.now())
		d.m.retries.WithLabelValues(q.integ.Name).Inc()
		d.log.Warn("notify: notification failed, retrying", "integration", q.integ.Name,
			"group", item.n.GroupKey, "attempt", attempt, "err", err)
	})
	cancel()
	q.st.end(err, ctx.Err() == nil, d.now())
	if ctx.Err() != nil {
		// Shutting down: neither delivered nor failed; the alerts stay
		// uncommitted and are re-read after the restart.
		return
	}
	s, reason, outcome := StateDelivered, q.integ.Name, outcomeSent
	if err != nil {
		s, reason, outcome = StateFailed, q.integ.Name+": "+err.Error(), outcomeFailed
		d.log.Error("notify: notification failed for good", "integration", q.integ.Name,
			"group", item.n.GroupKey, "alerts", item.n.Count, "resolved", item.n.Resolved, "err", err)
	}
	d.m.notifications.WithLabelValues(q.integ.Name, outcome).Inc()
	states := make([]stateChange, len(item.n.ids))
	for i, id := range item.n.ids {
		states[i] = stateChange{id, s, reason}
	}
	d.report(states)
	for _, r := range item.refs {
		r.release()
	}
}

// dedup is a bounded set of alert IDs: two generations, the older dropped
// when the newer fills, so memory stays bounded while recent IDs are
// remembered.
type dedup struct {
	size     int
	cur, old map[string]struct{}
}

func newDedup(size int) dedup { return dedup{size: size, cur: map[string]struct{}{}} }

// add reports whether id is new, remembering it.
func (s *dedup) add(id string) bool {
	if _, ok := s.cur[id]; ok {
		return false
	}
	if _, ok := s.old[id]; ok {
		return false
	}
	if len(s.cur) >= s.size {
		s.old, s.cur = s.cur, map[string]struct{}{}
	}
	s.cur[id] = struct{}{}
	return true
}
