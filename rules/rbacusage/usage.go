package rbacusage

import (
	"slices"
	"sort"
	"strings"
	"time"
)

// Pair is one kind of request a grant was used for: a verb on a resource
// (with its API group and subresource), or on a non-resource URL.
type Pair struct {
	Verb        string `json:"verb"`
	APIGroup    string `json:"api_group,omitempty"`
	Resource    string `json:"resource,omitempty"`
	Subresource string `json:"subresource,omitempty"`
	// NonResourceURL is the path of a non-resource request (/healthz);
	// Resource is empty then.
	NonResourceURL string `json:"non_resource_url,omitempty"`
}

// String is "verb resource[/sub][.group]" or "verb URL".
func (p Pair) String() string {
	if p.NonResourceURL != "" {
		return p.Verb + " " + p.NonResourceURL
	}
	s := p.Verb + " " + p.Resource
	if p.Subresource != "" {
		s += "/" + p.Subresource
	}
	if p.APIGroup != "" {
		s += "." + p.APIGroup
	}
	return s
}

// Use is one observation: a grant allowed a request of kind Pair at At.
type Use struct {
	Grant Grant
	Pair  Pair
	At    time.Time
}

// Usage is the state of one (binding, role, subject): when it last allowed
// a request and, per pair, when it last allowed that one.
type Usage struct {
	Grant    Grant
	LastUsed time.Time
	Pairs    []PairUse
}

// PairUse is a pair and when it was last used.
type PairUse struct {
	Pair     Pair      `json:"pair"`
	LastUsed time.Time `json:"last_used"`
}

// Table is one cluster's usage: every (binding, role, subject) seen, with
// its last use and its pairs, and since when the cluster has been watched.
// It is what the posture inventory answers rbac_usage from, and what the
// usage index stores document by document.
//
// Memory is the reason for its layout: a large cluster has ~10,000
// bindings each used for tens of pairs, so a pair is interned once per
// table (a uint32 in each tuple) and times are unix seconds. The
// benchmark BenchmarkTableMemory measures it. A Table is not safe for
// concurrent use; its owner (the posture engine's cluster) locks it.
type Table struct {
	watchStart time.Time
	readTo     time.Time
	pairs      []Pair
	pairIdx    map[Pair]uint32
	bindings   map[Ref]*binding
	// changed holds the tuples changed since the last TakeChanged.
	changed map[tupleKey]struct{}
}

type binding struct {
	tuples []*tuple
}

type tuple struct {
	role    Ref
	subject Subject
	last    int64
	pairs   []pairLast // sorted by id
}

type pairLast struct {
	id   uint32
	last int64
}

type tupleKey struct {
	binding Ref
	role    Ref
	subject Subject
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{pairIdx: map[Pair]uint32{}, bindings: map[Ref]*binding{}, changed: map[tupleKey]struct{}{}}
}

// WatchStart is when kubesift began watching the cluster (zero: unknown).
func (t *Table) WatchStart() time.Time { return t.watchStart }

// SetWatchStart keeps the earlier of at and the current watch start: history
// restored from the store can only move it back. at is rounded up to the
// second: rounding down would call the cluster watched up to a second
// before it was.
func (t *Table) SetWatchStart(at time.Time) {
	if at.IsZero() {
		return
	}
	if r := at.UTC().Truncate(time.Second); r.Before(at) {
		at = r.Add(time.Second)
	}
	if t.watchStart.IsZero() || at.Before(t.watchStart) {
		t.watchStart = at.UTC()
	}
}

// ReadTo is up to when the cluster's audit trail has been read (zero:
// unknown): uses after it are not in the table yet.
func (t *Table) ReadTo() time.Time { return t.readTo }

// SetReadTo records that the audit trail has been read up to at; it only
// moves forward.
func (t *Table) SetReadTo(at time.Time) {
	if at.After(t.readTo) {
		t.readTo = at.UTC()
	}
}

// Observe merges u and reports whether the table changed. Merging is
// idempotent and order-free (latest time wins), so a re-delivered or
// re-read observation changes nothing.
func (t *Table) Observe(u Use) (changed bool) {
	at := u.At.Unix()
	tp, created := t.tuple(u.Grant, at)
	if created || at > tp.last {
		tp.last, changed = max(tp.last, at), true
	}
	if tp.observe(t.intern(u.Pair), at) {
		changed = true
	}
	if changed {
		t.changed[tupleKey{u.Grant.Binding, u.Grant.Role, u.Grant.Subject}] = struct{}{}
	}
	return changed
}

// tuple returns g's tuple, creating it (last used at last) when absent.
func (t *Table) tuple(g Grant, last int64) (tp *tuple, created bool) {
	b := t.bindings[g.Binding]
	if b == nil {
		b = &binding{}
		t.bindings[g.Binding] = b
	}
	if tp = b.find(g.Role, g.Subject); tp != nil {
		return tp, false
	}
	tp = &tuple{role: g.Role, subject: g.Subject, last: last}
	b.tuples = append(b.tuples, tp)
	return tp, true
}

func (b *binding) find(role Ref, subject Subject) *tuple {
	for _, tp := range b.tuples {
		if tp.role == role && tp.subject == subject {
			return tp
		}
	}
	return nil
}

func (t *Table) intern(p Pair) uint32 {
	id, ok := t.pairIdx[p]
	if !ok {
		id = uint32(len(t.pairs))
		t.pairs = append(t.pairs, p)
		t.pairIdx[p] = id
	}
	return id
}

// observe records a use of pair id at at; it reports a change.
func (tp *tuple) observe(id uint32, at int64) bool {
	i, found := slices.BinarySearchFunc(tp.pairs, id, func(p pairLast, id uint32) int { return int(p.id) - int(id) })
	if !found {
		tp.pairs = slices.Insert(tp.pairs, i, pairLast{id, at})
		return true
	}
	if at > tp.pairs[i].last {
		tp.pairs[i].last = at
		return true
	}
	return false
}

// Restore merges a stored usage (the usage index's document) into the table.
func (t *Table) Restore(u Usage) {
	tp, _ := t.tuple(u.Grant, u.LastUsed.Unix())
	tp.last = max(tp.last, u.LastUsed.Unix())
	for _, p := range u.Pairs {
		tp.observe(t.intern(p.Pair), p.LastUsed.Unix())
	}
}

// Binding returns the usages of one binding, one per (role, subject), the
// most recent first; nil when it never allowed a request.
func (t *Table) Binding(ref Ref) []Usage {
	b := t.bindings[ref]
	if b == nil {
		return nil
	}
	out := make([]Usage, 0, len(b.tuples))
	for _, tp := range b.tuples {
		out = append(out, t.usage(ref, tp))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastUsed.After(out[j].LastUsed) })
	return out
}

// All returns every usage, ordered by binding, role and subject.
func (t *Table) All() []Usage {
	var out []Usage
	for ref, b := range t.bindings {
		for _, tp := range b.tuples {
			out = append(out, t.usage(ref, tp))
		}
	}
	sortUsages(out)
	return out
}

// TakeChanged returns the usages changed since the last call (what the
// store must write) and forgets them.
func (t *Table) TakeChanged() []Usage {
	out := make([]Usage, 0, len(t.changed))
	for k := range t.changed {
		if tp := t.bindings[k.binding].find(k.role, k.subject); tp != nil {
			out = append(out, t.usage(k.binding, tp))
		}
	}
	clear(t.changed)
	sortUsages(out)
	return out
}

// Len is the number of (binding, role, subject) tuples.
func (t *Table) Len() int {
	n := 0
	for _, b := range t.bindings {
		n += len(b.tuples)
	}
	return n
}

func (t *Table) usage(ref Ref, tp *tuple) Usage {
	u := Usage{Grant: Grant{Binding: ref, Role: tp.role, Subject: tp.subject}, LastUsed: time.Unix(tp.last, 0).UTC()}
	u.Pairs = make([]PairUse, len(tp.pairs))
	for i, p := range tp.pairs {
		u.Pairs[i] = PairUse{t.pairs[p.id], time.Unix(p.last, 0).UTC()}
	}
	sort.Slice(u.Pairs, func(i, j int) bool { return u.Pairs[i].Pair.String() < u.Pairs[j].Pair.String() })
	return u
}

func sortUsages(us []Usage) {
	sort.Slice(us, func(i, j int) bool { return us[i].Grant.Key() < us[j].Grant.Key() })
}

// Key is the identity of a (binding, role, subject) within a cluster, the
// usage index's document id after the cluster name.
func (g Grant) Key() string {
	return strings.Join([]string{g.Binding.Kind, g.Binding.Namespace, g.Binding.Name, g.Role.Kind, g.Role.Name,
		g.Subject.Kind, g.Subject.Namespace, g.Subject.Name}, "/")
}

// Since returns the pairs of us used at or after cutoff, merged over the
// tuples, sorted.
func Since(us []Usage, cutoff time.Time) []Pair {
	seen := map[Pair]bool{}
	var out []Pair
	for _, u := range us {
		for _, p := range u.Pairs {
			if !p.LastUsed.Before(cutoff) && !seen[p.Pair] {
				seen[p.Pair] = true
				out = append(out, p.Pair)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// LastUsed is the latest use over us (zero when none).
func LastUsed(us []Usage) time.Time {
	var last time.Time
	for _, u := range us {
		if u.LastUsed.After(last) {
			last = u.LastUsed
		}
	}
	return last
}

// Snapshot is what the usage store keeps of one cluster: since when it has
// been watched, up to when its audit trail has been read, and its tuples.
type Snapshot struct {
	WatchStart time.Time
	ReadTo     time.Time
	Usages     []Usage
}
