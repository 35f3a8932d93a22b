package posture

import (
	"errors"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/rbacusage"
)

// Engine judges the inventories of any number of clusters.
type Engine struct {
	stats *Stats
	// now stamps transitions whose cause has no Observed time (a Delete,
	// an object without one).
	now func() time.Time
	// usageWindow is the rbac_usage helper's window (SetUsageWindow).
	usageWindow time.Duration

	mu       sync.Mutex
	cks      *checkSet // the current checks, which a new cluster starts with
	clusters map[string]*clusterState
}

// checkSet is one compiled set of checks with its indexes. Each cluster
// holds the set it was last judged with (SetChecks swaps it cluster by
// cluster), since the verdict bits and dependency index of its inventory
// are by index into that set.
type checkSet struct {
	checks     []*check
	byKind     map[string][]int // check indexes whose condition names the kind
	anyKind    []int            // checks whose condition accepts every kind
	cisVersion string
}

// check is one object rule with what the engine needs at hand.
type check struct {
	c           *rules.ObjectCheck
	rule        *rules.Rule
	controlPane bool // judges mirror (control-plane) Pods, and only those
	weight      int
}

// severityWeight is a verdict's weight in the score.
var severityWeight = map[rules.Severity]int{
	rules.SeverityCritical: 10, rules.SeverityHigh: 6, rules.SeverityMedium: 3, rules.SeverityLow: 1,
}

// New returns an engine judging with the object rules of set.
func New(set *rules.Set) *Engine {
	return &Engine{cks: newCheckSet(set), stats: &Stats{}, clusters: map[string]*clusterState{}, now: time.Now, usageWindow: DefaultUsageWindow}
}

func newCheckSet(set *rules.Set) *checkSet {
	ck := &checkSet{byKind: map[string][]int{}, cisVersion: set.CISVersion()}
	for i, oc := range set.ObjectChecks() {
		r := oc.Rule()
		ck.checks = append(ck.checks, &check{c: oc, rule: r, controlPane: slices.Contains(r.Tags, "control-plane"), weight: severityWeight[r.Severity]})
		if ks, ok := oc.Kinds(); ok {
			for _, k := range ks {
				ck.byKind[k] = append(ck.byKind[k], i)
			}
		} else {
			ck.anyKind = append(ck.anyKind, i)
		}
	}
	return ck
}

// pair is one (check, object) verdict: the unit of re-evaluation.
type pair struct {
	check int
	obj   key
}

// finding is the state of one (check, object) finding.
type finding struct {
	d Decision
}

type fkey struct{ check, uid string }

// clusterState is one cluster's inventory, findings and dependency index.
type clusterState struct {
	mu       sync.Mutex
	name     string
	cks      *checkSet
	inv      *inventory
	findings map[fkey]*finding
	// deps files each pair under the dependency keys its last evaluation
	// read (entry.reads is the reverse, to unfile a pair that reads
	// otherwise).
	deps map[string]map[pair]struct{}
	rd   *reader
	env  *rules.ObjectEnv
	// usage is the cluster's RBAC usage (usage.go); it outlives inventory
	// rebuilds, which only replace objects.
	usage *rbacusage.Table
}

func (e *Engine) cluster(name string) *clusterState {
	e.mu.Lock()
	defer e.mu.Unlock()
	cs := e.clusters[name]
	if cs == nil {
		cs = &clusterState{name: name, cks: e.cks, findings: map[fkey]*finding{}, usage: rbacusage.NewTable()}
		cs.reset(newInventory())
		cs.rd.usage = e.usageView(cs)
		e.clusters[name] = cs
	}
	return cs
}

// reset gives cs a new inventory (and an empty dependency index for it),
// keeping the findings.
func (cs *clusterState) reset(inv *inventory) {
	cs.inv = inv
	cs.deps = map[string]map[pair]struct{}{}
	var uv *usageView
	if cs.rd != nil {
		uv = cs.rd.usage
	}
	cs.rd = &reader{inv: inv, usage: uv}
	cs.env = rules.NewObjectEnv(cs.rd)
}

// Apply puts o into the cluster's inventory and returns the transitions
// the change causes. err is non-nil (wrapping ErrInvalid) only when o lacks
// identity fields; nothing is changed then.
func (e *Engine) Apply(cluster string, o Object) ([]Decision, error) {
	ignored, err := validate(&o)
	if err != nil || ignored {
		e.stats.count(ignored, err)
		return nil, err
	}
	cs := e.cluster(cluster)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	k := keyOf(&o)
	old := cs.inv.objs[k]
	if old != nil && old.obj.UID == o.UID && old.obj.ResourceVersion == o.ResourceVersion {
		e.stats.Unchanged.Add(1)
		return nil, nil
	}
	e.stats.Applied.Add(1)
	var out []Decision
	if old != nil && old.obj.UID != o.UID {
		// The object was deleted and created again under the same name
		// while the delete went unseen: the old one's findings resolve.
		out = e.resolveUID(cs, old, o.ResourceVersion)
		for i := range cs.cks.checks {
			cs.file(old, i, nil)
		}
	}
	ent := &entry{obj: o}
	if old != nil && old.obj.UID == o.UID {
		ent.reads = old.reads // what the pairs read until judged again below
	}
	dirty := cs.inv.put(ent, old)
	return e.rejudge(cs, k, dirty, o.ResourceVersion, e.observed(&o), out), nil
}

// Delete removes an object and returns the transitions: its findings
// resolve, and what depended on it is judged again.
func (e *Engine) Delete(cluster, kind, namespace, name string) []Decision {
	cs := e.cluster(cluster)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	k := key{kind, namespace, name}
	old := cs.inv.objs[k]
	if old == nil {
		return nil
	}
	e.stats.Deleted.Add(1)
	rv := old.obj.ResourceVersion
	out := e.resolveUID(cs, old, rv)
	for i := range cs.cks.checks {
		cs.file(old, i, nil)
	}
	dirty := cs.inv.remove(k)
	return e.rejudge(cs, k, dirty, rv, e.now(), out)
}

// observed is the time o's change stamps on the findings it opens.
func (e *Engine) observed(o *Object) time.Time {
	if o.Observed.IsZero() {
		return e.now()
	}
	return o.Observed
}

// rejudge judges the object at k (if still present) with all its checks and
// every pair filed under a dirty key, appending transitions to out. rv and
// at are the resourceVersion and time of the change.
func (e *Engine) rejudge(cs *clusterState, k key, dirty []string, rv string, at time.Time, out []Decision) []Decision {
	if ent := cs.inv.objs[k]; ent != nil {
		out = e.judgeAll(cs, ent, rv, at, out)
	}
	todo := map[pair]struct{}{}
	for _, d := range dirty {
		for p := range cs.deps[d] {
			if p.obj != k {
				todo[p] = struct{}{}
			}
		}
	}
	for p := range todo {
		if ent := cs.inv.objs[p.obj]; ent != nil {
			out = e.judge(cs, p.check, ent, rv, at, out)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// candidates are the checks that can apply to an entry.
func (cs *clusterState) candidates(ent *entry) [2][]int {
	return [2][]int{cs.cks.byKind[ent.obj.Kind], cs.cks.anyKind}
}

func (e *Engine) judgeAll(cs *clusterState, ent *entry, rv string, at time.Time, out []Decision) []Decision {
	for _, idx := range cs.candidates(ent) {
		for _, i := range idx {
			out = e.judge(cs, i, ent, rv, at, out)
		}
	}
	return out
}

// judge evaluates one pair and appends the transition it causes, if any.
func (e *Engine) judge(cs *clusterState, i int, ent *entry, rv string, at time.Time, out []Decision) []Decision {
	ch := cs.cks.checks[i]
	o := &ent.obj
	fk := fkey{ch.rule.ID, o.UID}
	f := cs.findings[fk]
	if !ent.judged || ent.mirror != ch.controlPane {
		// An object can stop being judged (a controller adopted the Pod):
		// its open finding resolves rather than staying open forever.
		setBit(&ent.evaluated, i, false)
		setBit(&ent.failed, i, false)
		cs.file(ent, i, nil)
		if f == nil || !f.d.Open() {
			return out
		}
		f.d.State, f.d.Message, f.d.ResourceVersion = StateResolved, "no longer judged by this check", after(&f.d, rv, StateResolved)
		e.stats.transition(StateResolved)
		return append(out, f.d)
	}
	e.stats.Evaluations.Add(1)
	cs.rd.reads = cs.rd.reads[:0]
	cs.env.Reset(cs.name, o.Kind, o.Namespace, o.Name, o.UID, o.Body)
	failed, msg, _ := ch.c.Eval(cs.env) // errors are counted by the check's stats
	cs.file(ent, i, cs.rd.reads)
	setBit(&ent.evaluated, i, true)
	setBit(&ent.failed, i, failed && !ch.rule.Shadow)
	if ch.rule.Shadow {
		return out
	}
	switch {
	case failed && f == nil:
		f = &finding{d: e.decision(cs, ch, o)}
		cs.findings[fk] = f
		f.d.State, f.d.ResourceVersion, f.d.FirstSeen, f.d.OpenedAt = StateOpen, rv, at, at
	case failed && !f.d.Open():
		f.d.State, f.d.ResourceVersion, f.d.OpenedAt, f.d.Actor = StateReopened, after(&f.d, rv, StateReopened), at, nil
	case !failed && f != nil && f.d.Open():
		f.d.State, f.d.ResourceVersion = StateResolved, after(&f.d, rv, StateResolved)
	default:
		if failed {
			f.d.Message = msg // the finding stays open; its text follows the object
		}
		return out
	}
	f.d.Message = msg
	if !failed {
		f.d.Message = "passes: " + ch.rule.Title
	}
	f.d.Object = ObjectRef{o.Kind, o.Namespace, o.Name, o.UID}
	e.stats.transition(f.d.State)
	return append(out, f.d)
}

func (e *Engine) decision(cs *clusterState, ch *check, o *Object) Decision {
	r := ch.rule
	return Decision{
		ID: cs.name + "/" + r.ID + "/" + o.UID, Cluster: cs.name, CheckID: r.ID, Title: r.Title,
		CIS: r.CIS, CISVersion: cs.cks.cisVersion, Severity: r.Severity, Mitre: r.Mitre, Remediation: r.Remediation,
		Object: ObjectRef{o.Kind, o.Namespace, o.Name, o.UID},
	}
}

// resolveUID resolves every open finding of the object and forgets them:
// a deleted object's uid never comes back.
func (e *Engine) resolveUID(cs *clusterState, ent *entry, rv string) []Decision {
	var out []Decision
	for _, ch := range cs.cks.checks {
		fk := fkey{ch.rule.ID, ent.obj.UID}
		f := cs.findings[fk]
		if f == nil {
			continue
		}
		delete(cs.findings, fk)
		if f.d.Open() {
			f.d.State, f.d.ResourceVersion, f.d.Message = StateResolved, after(&f.d, rv, StateResolved), "object deleted"
			e.stats.transition(StateResolved)
			out = append(out, f.d)
		}
	}
	return out
}

// file records the dependency keys a pair read, unfiling its old ones. The
// keys are kept on the entry: most pairs read nothing beyond their object,
// and for them this is one nil check.
func (cs *clusterState) file(ent *entry, i int, reads []string) {
	old := ent.reads[i]
	if slices.Equal(old, reads) {
		return
	}
	p := pair{i, keyOf(&ent.obj)}
	for _, k := range old {
		delete(cs.deps[k], p)
		if len(cs.deps[k]) == 0 {
			delete(cs.deps, k)
		}
	}
	if len(reads) == 0 {
		delete(ent.reads, i)
		return
	}
	if ent.reads == nil {
		ent.reads = map[int][]string{}
	}
	ent.reads[i] = slices.Clone(reads)
	for _, k := range reads {
		if cs.deps[k] == nil {
			cs.deps[k] = map[pair]struct{}{}
		}
		cs.deps[k][p] = struct{}{}
	}
}

func setBit(bits *[]uint64, i int, v bool) {
	w := i / 64
	for len(*bits) <= w {
		*bits = append(*bits, 0)
	}
	if v {
		(*bits)[w] |= 1 << (i % 64)
	} else {
		(*bits)[w] &^= 1 << (i % 64)
	}
}

func bit(bits []uint64, i int) bool {
	w := i / 64
	return w < len(bits) && bits[w]&(1<<(i%64)) != 0
}

// Replace sets the cluster's inventory to exactly objs and judges every
// object once. Findings of objects no longer present resolve; findings that
// Restore seeded, or that were already open, stay silent when still
// failing. Invalid objects are skipped and reported together in err.
func (e *Engine) Replace(cluster string, objs []Object) ([]Decision, error) {
	inv := newInventory()
	var errs []error
	for i := range objs {
		o := objs[i]
		ignored, err := validate(&o)
		e.stats.count(ignored, err)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ignored {
			continue
		}
		e.stats.Applied.Add(1)
		inv.put(&entry{obj: o}, inv.objs[keyOf(&o)])
	}
	cs := e.cluster(cluster)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.reset(inv)
	present := map[string]*entry{}
	var out []Decision
	for _, ent := range inv.objs {
		present[ent.obj.UID] = ent
		out = e.judgeAll(cs, ent, ent.obj.ResourceVersion, e.observed(&ent.obj), out)
	}
	var gone []*entry
	seen := map[string]bool{}
	for fk, f := range cs.findings {
		if present[fk.uid] == nil && !seen[fk.uid] {
			seen[fk.uid] = true
			gone = append(gone, &entry{obj: Object{Kind: f.d.Object.Kind, Namespace: f.d.Object.Namespace, Name: f.d.Object.Name, UID: fk.uid}})
		}
	}
	for _, g := range gone {
		rv := ""
		for _, f := range cs.findings {
			if f.d.Object.UID == g.obj.UID && rvLess(rv, f.d.ResourceVersion) {
				rv = f.d.ResourceVersion
			}
		}
		out = append(out, e.resolveUID(cs, g, rv)...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, errors.Join(errs...)
}

// Restore seeds finding states a previous process emitted (its last
// Decision per finding, e.g. read back from the posture state index), so
// that rebuilding the inventory does not repeat their transitions. Each
// keeps its Actor until the finding reopens.
// Decisions of other clusters or unknown checks are skipped.
func (e *Engine) Restore(cluster string, ds []Decision) {
	cs := e.cluster(cluster)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	known := map[string]bool{}
	for _, ch := range cs.cks.checks {
		known[ch.rule.ID] = true
	}
	for _, d := range ds {
		if d.Cluster != cluster || !known[d.CheckID] || d.Object.UID == "" {
			continue
		}
		cs.findings[fkey{d.CheckID, d.Object.UID}] = &finding{d: d}
	}
}

// SetActor records a as who made the change behind the transition d, so
// that later transitions of the finding (a resolve) and Findings carry it.
// It does nothing when the finding has moved on to another transition
// since, or is gone.
func (e *Engine) SetActor(d *Decision, a *Actor) {
	e.mu.Lock()
	cs := e.clusters[d.Cluster] // not created: the cluster may have been forgotten since
	e.mu.Unlock()
	if cs == nil {
		return
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if f := cs.findings[fkey{d.CheckID, d.Object.UID}]; f != nil && f.d.ResourceVersion == d.ResourceVersion && f.d.Open() {
		f.d.Actor = a
	}
}

// Findings returns the cluster's open (and reopened) findings, by id.
func (e *Engine) Findings(cluster string) []Decision {
	cs := e.cluster(cluster)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var out []Decision
	for _, f := range cs.findings {
		if f.d.Open() {
			out = append(out, f.d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// after is the resourceVersion a transition of the finding whose last
// transition is prev, to state to, carries when caused by a change at rv.
// It keeps the invariant of the package doc: versions order as the state
// index orders them (2 × resourceVersion, plus 1 when resolved), and a
// transition must order after the one before it. rv is used when it does;
// when it does not, the change that really caused the transition is one the
// engine cannot name (a dependency deleted while no process watched, a
// delete whose own resourceVersion Delete is not given, objects delivered
// out of revision order), and that change came after prev's: prev's
// resourceVersion for a resolve (the +1 orders it after), the next revision
// for a reopen.
func after(prev *Decision, rv string, to State) string {
	if rvLess(rv, prev.ResourceVersion) {
		rv = prev.ResourceVersion
	}
	if rv == prev.ResourceVersion && to != StateResolved {
		return rvNext(rv)
	}
	return rv
}

// rvNext is the decimal revision after rv. A resourceVersion that is not a
// decimal revision is returned as it is: nothing orders it, and the
// Elasticsearch writer refuses it anyway.
func rvNext(rv string) string {
	b := []byte(rv)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < '0' || b[i] > '9' {
			return rv
		}
	}
	if len(b) == 0 {
		return rv
	}
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < '9' {
			b[i]++
			return string(b)
		}
		b[i] = '0'
	}
	return "1" + string(b)
}

// rvLess orders resourceVersions, which etcd writes as decimal revisions;
// comparing them as strings would put "9" after "10".
func rvLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}
