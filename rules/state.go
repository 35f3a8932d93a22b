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
type lru[V any] struct {
	mu      sync.Mutex
	max     int
	m       map[string]*list.Element
	order   *list.List // front = most recent
	evicted atomic.Uint64
}

type lruEntry[V any] struct {
	key string
	val V
}

func newLRU[V any](max int) *lru[V] {
	return &lru[V]{max: max, m: map[string]*list.Element{}, order: list.New()}
}

// get returns the value for key, creating it with mk when absent; the entry
// becomes the most recent. Callers hold l.mu.
func (l *lru[V]) get(key string, mk func() V) *V {
	if e, ok := l.m[key]; ok {
		l.order.MoveToFront(e)
		return &e.Value.(*lruEntry[V]).val
	}
	if len(l.m) >= l.max {
		old := l.order.Back()
		l.order.Remove(old)
		delete(l.m, old.Value.(*lruEntry[V]).key)
		l.evicted.Add(1)
	}
	ent := &lruEntry[V]{key: key, val: mk()}
	l.m[key] = l.order.PushFront(ent)
	return &ent.val
}

func (l *lru[V]) lookup(key string) (*V, bool) {
	if e, ok := l.m[key]; ok {
		l.order.MoveToFront(e)
		return &e.Value.(*lruEntry[V]).val, true
	}
	return nil, false
}

func (l *lru[V]) remove(key string) {
	if e, ok := l.m[key]; ok {
		l.order.Remove(e)
		delete(l.m, key)
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

type seqProgress struct {
	done  int // steps completed
	start time.Time
}

type sequenceState struct {
	lru    *lru[*seqProgress]
	steps  int
	within time.Duration
}

// observe advances the group's progress when the record matched the next
// step in time; step 0 (re)starts a sequence.
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
		// Happened before the sequence began: records of different keys
		// (the binding's author, the exec's user) come from different
		// partitions, so an older record can be read after a newer one.
		// It is no next step; the sequence stays as it was.
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

func (s *sequenceState) evictions() uint64 { return s.lru.evicted.Load() }
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
