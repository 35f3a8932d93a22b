package rules

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxGroups bounds the groups one stateful rule tracks.
const DefaultMaxGroups = 10000

// state is the memory of one stateful rule. All times are the records' own
// event times, never the wall clock, so replaying an old log gives the same
// alerts as seeing it live. observe is called with the rule's lock held by
// the state itself; implementations are safe for concurrent use.
type state interface {
	// observe feeds one matching record of group key at time t (for
	// sequences: that matched step; for distinct: with value). It reports
	// whether the rule fires, and the count to put on the alert.
	observe(key string, t time.Time, step int, value string) (fire bool, count int)
	// evictions is the number of groups dropped to stay within the bound.
	evictions() uint64
	// groups is the number of groups held now.
	groups() int
}

func newState(r *Rule, maxGroups int) state {
	if maxGroups <= 0 {
		maxGroups = DefaultMaxGroups
	}
	switch {
	case r.Threshold != nil:
		return &thresholdState{lru: newLRU[*ring](maxGroups), count: r.Threshold.Count, window: r.Threshold.Window, cooldown: r.Threshold.Cooldown}
	case r.Distinct != nil:
		return &distinctState{lru: newLRU[*distinctGroup](maxGroups), count: r.Distinct.Count, window: r.Distinct.Window, cooldown: r.Distinct.Cooldown}
	case r.Sequence != nil:
		return &sequenceState{lru: newLRU[*seqProgress](maxGroups), steps: len(r.Sequence.Steps), within: r.Sequence.Within}
	case r.NewTerm != nil:
		return &newTermState{lru: newLRU[time.Time](maxGroups), lookback: r.NewTerm.Lookback}
	}
	return nil
}

// lru is a bounded map whose least recently used entry is evicted first.
//
// For durable state (Scope) it also keeps what the changelog needs: the
// keys touched since the last drain (dirty: each is written, or deleted with
// a tombstone when it is gone), and the encoded size of each entry and
// their sum. Without a Scope dirty is nil and none of that is kept.
type lru[V any] struct {
	mu      sync.Mutex
	max     int
	m       map[string]*list.Element
	order   *list.List // front = most recent
	evicted atomic.Uint64

	// dirty maps each key touched since the last drain to why it went,
	// if it did (a Reason*; "" while it is present).
	dirty map[string]string
	bytes int64 // sum of the entries' encoded sizes
}

type lruEntry[V any] struct {
	key string
	val V
	// size is the encoded size of key and value when last written to the
	// changelog.
	size int64
}

func newLRU[V any](max int) *lru[V] {
	return &lru[V]{max: max, m: map[string]*list.Element{}, order: list.New()}
}

// touch marks e as possibly changed by the current record.
func (l *lru[V]) touch(e *lruEntry[V]) {
	if l.dirty != nil {
		l.dirty[e.key] = ""
	}
}

// get returns the value for key, creating it with mk when absent; the entry
// becomes the most recent. Callers hold l.mu.
func (l *lru[V]) get(key string, mk func() V) *V {
	if e, ok := l.m[key]; ok {
		l.order.MoveToFront(e)
		ent := e.Value.(*lruEntry[V])
		l.touch(ent)
		return &ent.val
	}
	if len(l.m) >= l.max {
		l.evictOldest()
	}
	ent := &lruEntry[V]{key: key, val: mk()}
	l.m[key] = l.order.PushFront(ent)
	l.touch(ent)
	return &ent.val
}

// evictOldest drops the least recently used entry (a tombstone when durable).
func (l *lru[V]) evictOldest() {
	old := l.order.Back()
	ent := old.Value.(*lruEntry[V])
	l.order.Remove(old)
	delete(l.m, ent.key)
	l.bytes -= ent.size
	l.evicted.Add(1)
	if l.dirty != nil {
		l.dirty[ent.key] = ReasonEvicted
	}
}

func (l *lru[V]) lookup(key string) (*V, bool) {
	if e, ok := l.m[key]; ok {
		l.order.MoveToFront(e)
		ent := e.Value.(*lruEntry[V])
		l.touch(ent)
		return &ent.val, true
	}
	return nil, false
}

func (l *lru[V]) remove(key string) {
	if e, ok := l.m[key]; ok {
		l.order.Remove(e)
		delete(l.m, key)
		l.bytes -= e.Value.(*lruEntry[V]).size
		if l.dirty != nil {
			l.dirty[key] = ReasonDone
		}
	}
}

func (l *lru[V]) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// ring holds the last N match times of a group, and when it last fired.
type ring struct {
	t     []time.Time
	next  int
	n     int
	fired time.Time
}

type thresholdState struct {
	lru      *lru[*ring]
	count    int
	window   time.Duration
	cooldown time.Duration
}

// observe fires when the count-th most recent match is within the window of
// this one; the group then starts over, so a sustained burst alerts once per
// count matches rather than on every record.
func (s *thresholdState) observe(key string, t time.Time, _ int, _ string) (bool, int) {
	s.lru.mu.Lock()
	defer s.lru.mu.Unlock()
	r := *s.lru.get(key, func() *ring { return &ring{t: make([]time.Time, s.count)} })
	if !r.fired.IsZero() && t.Sub(r.fired) < s.cooldown {
		return false, 0 // cooling down: the group already alerted
	}
	r.t[r.next] = t
	r.next = (r.next + 1) % s.count
	if r.n < s.count {
		r.n++
	}
	if r.n < s.count {
		return false, 0
	}
	oldest := r.t[r.next] // after the write, next points at the oldest kept
	if t.Sub(oldest) <= s.window {
		// Start over; keep the group (with its fire time) only when a
		// cooldown needs remembering.
		if s.cooldown > 0 {
			r.n, r.next, r.fired = 0, 0, t
		} else {
			s.lru.remove(key)
		}
		return true, s.count
	}
	return false, 0
}

func (s *thresholdState) evictions() uint64 { return s.lru.evicted.Load() }
func (s *thresholdState) groups() int       { return s.lru.size() }

type distinctGroup struct {
	seen  map[string]time.Time
	fired time.Time
}

type distinctState struct {
	lru      *lru[*distinctGroup]
	count    int
	window   time.Duration
	cooldown time.Duration
}

// observe records value for the group, forgets values last seen before the
// window, and fires when count distinct values remain.
func (s *distinctState) observe(key string, t time.Time, _ int, value string) (bool, int) {
	s.lru.mu.Lock()
	defer s.lru.mu.Unlock()
	g := *s.lru.get(key, func() *distinctGroup { return &distinctGroup{seen: map[string]time.Time{}} })
	if !g.fired.IsZero() && t.Sub(g.fired) < s.cooldown {
		return false, 0
	}
	if prev, ok := g.seen[value]; !ok || t.After(prev) {
		g.seen[value] = t
	}
	for v, seen := range g.seen {
		if t.Sub(seen) > s.window {
			delete(g.seen, v)
		}
	}
	if len(g.seen) >= s.count {
		n := len(g.seen)
		if s.cooldown > 0 {
			g.seen, g.fired = map[string]time.Time{}, t
		} else {
			s.lru.remove(key)
		}
		return true, n
	}
	return false, 0
}

func (s *distinctState) evictions() uint64 { return s.lru.evicted.Load() }
func (s *distinctState) groups() int       { return s.lru.size() }

// pairMemory bounds the first steps and the last steps a two-step sequence
// remembers per group, to pair records read out of event order.
const pairMemory = 8

type seqProgress struct {
	done  int // steps completed (sequences of more than two steps)
	start time.Time
	// Two-step sequences: the group's recent first steps (times) and last
	// steps, each kept in event order, at most pairMemory of each.
	firsts []time.Time
	lasts  []lastStep
}

// lastStep is a last step of a two-step sequence: whether it raised its
// alert, and the alert made ready in case a first step read later makes it
// fire.
type lastStep struct {
	t     time.Time
	fired bool
	alert Alert
}

// sequenceState follows sequences by event time, never by arrival. The steps
// of one sequence may be keyed by different identities (the binding's
// author, the exec's user) and so come from different Kafka partitions,
// which a processor reads interleaved in any way.
//
// A two-step sequence fires on a last step L when the latest first step F
// at or before L is at most within before it and no other last step came
// between F and L — what reading in event order gives. Each group remembers
// its last pairMemory first and last steps, so a first step read after the
// last step it precedes still makes that one fire, with the alert it would
// have raised (same ID): the outcome does not depend on how partitions
// interleave. Longer sequences advance step by step in arrival order, and
// a record older than the sequence's start never advances one.
type sequenceState struct {
	lru     *lru[*seqProgress]
	steps   int
	within  time.Duration
	dropped atomic.Uint64 // remembered steps dropped to stay within pairMemory
}

// observe advances the group's progress when the record matched the next
// step in time; step 0 (re)starts a sequence. Used for sequences of more
// than two steps (feed).
func (s *sequenceState) observe(key string, t time.Time, step int, _ string) (bool, int) {
	s.lru.mu.Lock()
	defer s.lru.mu.Unlock()
	if step == 0 {
		p := *s.lru.get(key, func() *seqProgress { return &seqProgress{} })
		if p.done <= 1 || t.Sub(p.start) > s.within {
			p.done, p.start = 1, t
		}
		return false, 0
	}
	pp, ok := s.lru.lookup(key)
	if !ok {
		return false, 0
	}
	p := *pp
	if t.Sub(p.start) > s.within {
		s.lru.remove(key)
		return false, 0
	}
	if t.Before(p.start) {
		// Happened before the sequence began (read late, from another
		// partition): no next step of it.
		return false, 0
	}
	if p.done == step {
		p.done++
	}
	if p.done == s.steps {
		s.lru.remove(key)
		return true, s.steps
	}
	return false, 0
}

// feed takes a matched step of the sequence: step at t of group key, with mk
// making the alert of a last step. It returns the alert that fires now, if
// any (pair for two-step sequences, observe for longer ones).
func (s *sequenceState) feed(key string, t time.Time, step int, mk func() Alert) *Alert {
	if s.steps == 2 {
		return s.pair(key, t, step, mk)
	}
	if fire, _ := s.observe(key, t, step, ""); fire {
		a := mk()
		return &a
	}
	return nil
}

// pair feeds a matched step of a two-step sequence: step 0 at t, or step 1
// at t with mk making its alert. It returns the alert that now fires, if
// any: for a last step, its own when it fires on arrival; for a first step,
// that of the last step it completes, if one was read before it.
func (s *sequenceState) pair(key string, t time.Time, step int, mk func() Alert) *Alert {
	s.lru.mu.Lock()
	defer s.lru.mu.Unlock()
	p := *s.lru.get(key, func() *seqProgress { return &seqProgress{} })
	if step == 0 {
		p.firsts = s.insertTime(p.firsts, t)
		// Only the first last step at or after t can pair with it: any
		// later one has that one between them.
		for i := range p.lasts {
			l := &p.lasts[i]
			if l.t.Before(t) {
				continue
			}
			if !l.fired && s.fires(p, l.t, i) {
				l.fired = true
				a := l.alert
				l.alert = Alert{} // fired: only its time matters now
				return &a
			}
			break
		}
		return nil
	}
	i := s.insertLast(p, t)
	if i < 0 {
		return nil // older than every last step remembered: dropped, counted
	}
	a := mk()
	if s.fires(p, t, i) {
		p.lasts[i].fired = true
		return &a
	}
	p.lasts[i].alert = a
	return nil
}

// fires reports whether the last step at t (index i of p.lasts) fires: the
// latest first step at or before t is at most within before it, and no
// other last step lies between the two.
func (s *sequenceState) fires(p *seqProgress, t time.Time, i int) bool {
	var first time.Time
	found := false
	for _, f := range p.firsts {
		if f.After(t) {
			break
		}
		first, found = f, true
	}
	if !found || t.Sub(first) > s.within {
		return false
	}
	return i == 0 || p.lasts[i-1].t.Before(first)
}

// insertTime adds t to ts in order, dropping the oldest beyond pairMemory.
func (s *sequenceState) insertTime(ts []time.Time, t time.Time) []time.Time {
	i := len(ts)
	for i > 0 && ts[i-1].After(t) {
		i--
	}
	ts = append(ts, time.Time{})
	copy(ts[i+1:], ts[i:])
	ts[i] = t
	if len(ts) > pairMemory {
		ts = append(ts[:0], ts[1:]...)
		s.dropped.Add(1)
	}
	return ts
}

// insertLast adds a last step at t to p.lasts in order, dropping the oldest
// beyond pairMemory, and returns its index (-1: older than all pairMemory
// remembered, not kept).
func (s *sequenceState) insertLast(p *seqProgress, t time.Time) int {
	i := len(p.lasts)
	for i > 0 && p.lasts[i-1].t.After(t) {
		i--
	}
	if i == 0 && len(p.lasts) == pairMemory {
		s.dropped.Add(1)
		return -1
	}
	p.lasts = append(p.lasts, lastStep{})
	copy(p.lasts[i+1:], p.lasts[i:])
	p.lasts[i] = lastStep{t: t}
	if len(p.lasts) > pairMemory {
		p.lasts = append(p.lasts[:0], p.lasts[1:]...)
		s.dropped.Add(1)
		i--
	}
	return i
}

func (s *sequenceState) evictions() uint64 { return s.lru.evicted.Load() + s.dropped.Load() }
func (s *sequenceState) groups() int       { return s.lru.size() }

type newTermState struct {
	lru      *lru[time.Time]
	lookback time.Duration
}

// observe fires when the key was not seen within the lookback.
func (s *newTermState) observe(key string, t time.Time, _ int, _ string) (bool, int) {
	s.lru.mu.Lock()
	defer s.lru.mu.Unlock()
	last, seen := s.lru.lookup(key)
	if seen {
		fire := t.Sub(*last) > s.lookback
		if t.After(*last) {
			*last = t
		}
		return fire, 1
	}
	*s.lru.get(key, func() time.Time { return t }) = t
	return true, 1
}

func (s *newTermState) evictions() uint64 { return s.lru.evicted.Load() }
func (s *newTermState) groups() int       { return s.lru.size() }
