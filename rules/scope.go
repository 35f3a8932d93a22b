package rules

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/kubesift/kubesift/record"
)

// Scope is the memory of the stateful rules for one input partition, kept
// apart from the engine's shared memory so that it can be written to a
// changelog and restored wherever the partition goes next — the way Kafka
// Streams keeps a task's state.
//
// # The durable-state contract
//
// The processor makes one Scope per assigned partition (Engine.NewScope),
// restores it from the partition's changelog (Restore, then Drain for the
// stale entries it found) before evaluating the partition's first record,
// and then, for every record in partition order: EvalIn with the record's
// offset, then Drain, whose changes it writes to the changelog in that
// order. Every Drain with changes ends with the partition's checkpoint: the
// offset of the record whose changes are now all in the changelog. The
// processor must write a record's changes only after that record's alerts
// are durable, and commit its offset only after its changes are. A crash
// then re-delivers records from the committed offset; those at or below
// the restored checkpoint already count in the restored windows, so the
// stateful rules skip them (no record counts twice), and their alerts are
// out already; those above it are applied again and raise the same alerts
// (same IDs) as before, if any.
//
// Each change is keyed by (input topic, rule, group key); a group that is
// gone — its window done, evicted to stay within the bounds, or expired —
// becomes a tombstone. Expiry follows each rule's own window on event time:
// a group none of whose times is within the window (plus the cooldown) of
// the newest event time the Scope has seen is dropped, and new_term terms
// are forgotten after their lookback, capped by NewTermHorizon. Size is
// bounded per rule by MaxGroups (LoadOptions) and MaxBytes (the encoded
// size of its groups): past either, the least recently used group goes.
//
// A Scope is used by one goroutine at a time (the partition's); the rule
// engine may be reloaded meanwhile: a rule whose stateful definition
// changed starts empty in every Scope, and its old entries are deleted at
// the next restore.
type Scope struct {
	e      *Engine
	topic  string
	opts   ScopeOptions
	states map[string]*scoped // by rule id
	// touched are the states the current record reached, drained next.
	touched   []*scoped
	watermark time.Time // newest event time seen
	pos       int64     // offset of the record being evaluated
	through   int64     // restored checkpoint: records at or below it are in the state
	sinceFull int       // records since every state was swept
	// stale are the keys whose latest restored entry belongs to a rule
	// that is gone or changed: tombstones for the next Drain.
	stale map[string]struct{}
	mu    sync.Mutex
	// set and rules index the stateful rules of the set last restored with.
	set   *Set
	rules map[string]*compiledRule
}

// ScopeOptions bound a Scope.
type ScopeOptions struct {
	// Topic is the input topic of the partition (part of every key).
	Topic string
	// MaxBytes bounds the encoded size of one rule's groups; 0: no bound
	// beyond MaxGroups.
	MaxBytes int64
	// NewTermHorizon caps how long a new_term rule remembers a term; 0:
	// its lookback.
	NewTermHorizon time.Duration
}

// StateChange is one changelog message: Value nil is a tombstone.
type StateChange struct {
	Key   []byte
	Value []byte
	// Reason is ReasonUpdate, or why the group is gone.
	Reason string
}

// Reasons of a StateChange.
const (
	ReasonUpdate  = "update"  // the group changed
	ReasonDone    = "done"    // the rule finished with the group (fired, sequence ended)
	ReasonEvicted = "evicted" // dropped to stay within MaxGroups or MaxBytes
	ReasonExpired = "expired" // nothing of it is within the window any more
	ReasonStale   = "stale"   // restored entry of a rule that is gone or changed
	// ReasonCheckpoint marks the partition's checkpoint (see Scope).
	ReasonCheckpoint = "checkpoint"
)

// sweepEvery bounds how many records pass before every rule (not only the
// ones records reached) is checked for expired groups.
const sweepEvery = 1024

// scoped is one rule's state in a Scope.
type scoped struct {
	id      string
	fp      uint64
	st      state
	d       store
	touched bool
}

// NewScope returns an empty Scope for one input partition.
func (e *Engine) NewScope(o ScopeOptions) *Scope {
	return &Scope{e: e, topic: o.Topic, opts: o, states: map[string]*scoped{}, stale: map[string]struct{}{}, through: -1}
}

// EvalIn is Eval with the stateful rules' memory taken from sc (nil: the
// engine's shared memory) for the record at offset of sc's partition.
func (e *Engine) EvalIn(r *record.Record, sc *Scope, offset int64) []Alert {
	if sc != nil {
		sc.mu.Lock()
		defer sc.mu.Unlock()
		sc.pos = offset
		sc.watermark = later(sc.watermark, r.EventTime)
	}
	return e.eval(r, sc)
}

// stateOf returns the state of cr to observe the current record with, and
// whether the record is already in it (a re-delivery at or below the
// restored checkpoint). Without a Scope it is the engine's shared state.
func (sc *Scope) stateOf(cr *compiledRule) (state, bool) {
	if sc == nil {
		return cr.state, false
	}
	if sc.pos <= sc.through {
		return nil, true
	}
	s := sc.states[cr.ID]
	if s == nil || s.fp != cr.stateFP {
		s = sc.newScoped(cr)
		sc.states[cr.ID] = s
	}
	if !s.touched {
		s.touched = true
		sc.touched = append(sc.touched, s)
	}
	return s.st, false
}

func (sc *Scope) newScoped(cr *compiledRule) *scoped {
	st := newState(&cr.Rule, sc.e.opts.MaxGroups)
	return &scoped{id: cr.ID, fp: cr.stateFP, st: st, d: storeOf(st, cr.stateFP, sc.opts.NewTermHorizon)}
}

// Drain returns the changes since the last Drain (or the restore's stale
// entries), after expiring what fell out of its window and evicting past
// MaxBytes.
func (sc *Scope) Drain() []StateChange {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	var out []StateChange
	if len(sc.stale) > 0 {
		for _, k := range slices.Sorted(maps.Keys(sc.stale)) {
			out = append(out, StateChange{Key: []byte(k), Reason: ReasonStale})
		}
		clear(sc.stale)
	}
	stale := len(out)
	drainList := sc.touched
	if sc.sinceFull++; sc.sinceFull >= sweepEvery {
		sc.sinceFull = 0
		drainList = drainList[:0:0]
		for _, s := range sc.states {
			drainList = append(drainList, s)
		}
	}
	for _, s := range drainList {
		rule := s.id
		s.d.drain(sc.watermark, sc.opts.MaxBytes, func(key string, val []byte, reason string) {
			out = append(out, StateChange{Key: stateKey(sc.topic, rule, key), Value: val, Reason: reason})
		})
	}
	if len(out) > stale {
		out = append(out, StateChange{Key: stateKey(sc.topic, "", ""), Reason: ReasonCheckpoint,
			Value: appendHeader(nil, valueHeader{kind: kindCheckpoint, pos: sc.pos})})
	}
	for _, s := range sc.touched {
		s.touched = false
	}
	sc.touched = sc.touched[:0]
	return out
}

// RestoreResult says what Restore did with one changelog entry.
type RestoreResult int

// Outcomes of Restore.
const (
	Restored   RestoreResult = iota // applied (or, a tombstone, removed the group)
	OtherTopic                      // belongs to another input topic's partition
	Stale                           // a rule that is gone or changed: deleted at the next Drain
)

// Restore applies one changelog entry (value nil: a tombstone) read from
// the partition's changelog, oldest first. As compaction would, each entry
// replaces whatever an earlier one said of its group: a tombstone, a stale
// entry (a rule that is gone or changed: deleted at the next Drain) and a
// malformed one (an error wrapping ErrStateValue) leave the group empty.
func (sc *Scope) Restore(key, value []byte) (RestoreResult, error) {
	topic, rule, group, err := parseStateKey(key)
	if err != nil {
		return 0, err
	}
	if topic != sc.topic {
		return OtherTopic, nil
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if rule == "" {
		return sc.restoreCheckpoint(value)
	}
	delete(sc.stale, string(key))
	if s := sc.states[rule]; s != nil {
		s.d.forget(group)
	}
	res, err := sc.restoreGroup(rule, group, value)
	if res == Stale && err == nil {
		sc.stale[string(key)] = struct{}{}
	}
	return res, err
}

// restoreGroup sets group of rule, which Restore emptied, from value.
func (sc *Scope) restoreGroup(rule, group string, value []byte) (RestoreResult, error) {
	if value == nil {
		return Restored, nil
	}
	h, payload, err := parseHeader(value)
	if err != nil {
		return 0, fmt.Errorf("rule %s: %w", rule, err)
	}
	cr := sc.stateful(rule)
	if cr == nil || h.fp != cr.stateFP {
		return Stale, nil
	}
	s := sc.states[rule]
	if s == nil {
		s = sc.newScoped(cr)
		sc.states[rule] = s
	}
	if h.kind != s.d.kind() {
		return 0, fmt.Errorf("%w: rule %s: kind %d, want %d", ErrStateValue, rule, h.kind, s.d.kind())
	}
	// Sized as Drain sizes a group it writes: group key and value.
	if err := s.d.restore(group, payload, int64(len(group)+len(value))); err != nil {
		return 0, fmt.Errorf("rule %s: %w", rule, err)
	}
	return Restored, nil
}

func (sc *Scope) restoreCheckpoint(value []byte) (RestoreResult, error) {
	if value == nil {
		return Restored, nil
	}
	h, payload, err := parseHeader(value)
	switch {
	case err != nil:
		return 0, fmt.Errorf("checkpoint: %w", err)
	case h.kind != kindCheckpoint || len(payload) != 0:
		return 0, fmt.Errorf("%w: checkpoint of kind %d with %d bytes of payload", ErrStateValue, h.kind, len(payload))
	}
	sc.through = max(sc.through, h.pos)
	return Restored, nil
}

// Groups is the number of groups the Scope holds, over all rules.
func (sc *Scope) Groups() int {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	n := 0
	for _, s := range sc.states {
		n += s.st.groups()
	}
	return n
}

// stateful returns the stateful rule of id in the current set, or nil.
func (sc *Scope) stateful(id string) *compiledRule {
	set := sc.e.Set()
	if sc.set != set {
		sc.set, sc.rules = set, map[string]*compiledRule{}
		for _, r := range set.rules {
			if r.state != nil {
				sc.rules[r.ID] = r
			}
		}
	}
	return sc.rules[id]
}

// statefulFingerprint identifies a stateful definition (sameStatefulDef's
// fields): a restored group is only used by the definition that made it.
func statefulFingerprint(r *Rule) uint64 {
	h := sha256.Sum256([]byte(fmt.Sprint(r.Condition, r.GroupBy, r.Threshold, r.Distinct, r.Sequence, r.NewTerm)))
	return binary.BigEndian.Uint64(h[:8])
}
