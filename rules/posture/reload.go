package posture

import (
	"sort"

	"github.com/kubesift/kubesift/rules"
)

// SetChecks replaces the engine's checks with the object rules of set (the
// set a rules.Engine reload compiled, shared, not compiled again) and
// judges every cluster's inventory with them once. It returns the
// transitions by cluster: an open finding of a check no longer in set
// resolves, a new check opens findings, a changed one opens or resolves
// where its verdict changed, and a verdict that did not change is silent,
// as in a rebuild. A finding whose open state stays keeps its title and
// severity until its next transition.
//
// Clusters change over one at a time, each under its own lock, so Apply
// on the others goes on meanwhile; a cluster first seen afterwards starts
// with the new checks.
func (e *Engine) SetChecks(set *rules.Set) map[string][]Decision {
	ck := newCheckSet(set)
	e.mu.Lock()
	e.cks = ck
	clusters := make([]*clusterState, 0, len(e.clusters))
	for _, cs := range e.clusters {
		clusters = append(clusters, cs)
	}
	e.mu.Unlock()
	out := map[string][]Decision{}
	for _, cs := range clusters {
		if ds := e.rejudgeWith(cs, ck); len(ds) > 0 {
			out[cs.name] = ds
		}
	}
	return out
}

// rejudgeWith gives cs the checks ck and judges its whole inventory with
// them. The verdict bits and the dependency index are by check index, so
// they are rebuilt rather than translated.
func (e *Engine) rejudgeWith(cs *clusterState, ck *checkSet) []Decision {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	e.mu.Lock()
	current := e.clusters[cs.name] == cs
	e.mu.Unlock()
	if !current || cs.cks == ck {
		return nil // forgotten meanwhile (its partition moved): not ours to decide about
	}
	cs.cks = ck
	known := map[string]bool{}
	for _, ch := range ck.checks {
		known[ch.rule.ID] = true
	}
	var out []Decision
	for fk, f := range cs.findings {
		if known[fk.check] || !f.d.Open() {
			continue
		}
		// Kept, resolved, rather than forgotten: should the check come
		// back, its finding reopens at a version after this resolve, which
		// the state index then takes.
		f.d.State, f.d.Message, f.d.ResourceVersion = StateResolved, "check removed from the rules", after(&f.d, f.d.ResourceVersion, StateResolved)
		e.stats.transition(StateResolved)
		out = append(out, f.d)
	}
	for _, ent := range cs.inv.objs {
		ent.evaluated, ent.failed, ent.reads = nil, nil, nil
	}
	cs.reset(cs.inv)
	at := e.now()
	for _, ent := range cs.inv.objs {
		out = e.judgeAll(cs, ent, ent.obj.ResourceVersion, at, out)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
