package posture

import (
	"sort"
	"strings"
	"time"

	"github.com/kubesift/kubesift/rules/rbacusage"
)

// DefaultUsageWindow is how long a binding may go unused before the
// rbac_usage helper calls it unused, and how long a cluster must have been
// watched before it calls anything unused.
const DefaultUsageWindow = 90 * 24 * time.Hour

// usageView is what the rbac_usage helper of one cluster reads: its usage
// table, the window and the engine's clock.
type usageView struct {
	t      *rbacusage.Table
	window func() time.Duration
	now    func() time.Time
}

func (e *Engine) usageView(cs *clusterState) *usageView {
	return &usageView{t: cs.usage, window: func() time.Duration { return e.usageWindow }, now: e.now}
}

// SetUsageWindow sets the window of the rbac_usage helper (d > 0) before
// the engine judges anything.
func (e *Engine) SetUsageWindow(d time.Duration) {
	if d > 0 {
		e.usageWindow = d
	}
}

// usageKey is the dependency key of a binding's usage: a check that read
// rbac_usage(binding) is judged again when the binding's usage changes and
// when time passes (RejudgeUsage).
func usageKey(b rbacusage.Ref) string { return "usage/" + key{b.Kind, b.Namespace, b.Name}.String() }

// RestoreUsage seeds the cluster's usage from the store: the watch start and
// the stored tuples (a stored use also proves the cluster was watched then).
// Like Restore it judges nothing: call it before the inventory is judged
// (Replace), which then reads the restored usage.
func (e *Engine) RestoreUsage(cluster string, watchStart time.Time, us []rbacusage.Usage) {
	cs := e.cluster(cluster)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.usage.SetWatchStart(watchStart)
	for _, u := range us {
		cs.usage.Restore(u)
		cs.usage.SetWatchStart(u.LastUsed)
	}
	cs.usage.TakeChanged() // what the store gave back needs no writing
}

// ObserveUsage merges uses into the cluster's usage and judges again the
// checks that read the usage of a binding whose state changed. Uses are
// idempotent: observing the same ones twice changes nothing the second time.
func (e *Engine) ObserveUsage(cluster string, uses []rbacusage.Use) []Decision {
	cs := e.cluster(cluster)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if dirty := e.observeUsage(cs, uses); len(dirty) > 0 {
		return e.rejudgeUsage(cs, dirty)
	}
	return nil
}

// ObserveUsageRejudgeAll is ObserveUsage then RejudgeUsage, judging each
// check once: what a complete read of the audit trail calls for.
func (e *Engine) ObserveUsageRejudgeAll(cluster string, uses []rbacusage.Use) []Decision {
	cs := e.cluster(cluster)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	e.observeUsage(cs, uses)
	return e.rejudgeUsage(cs, nil)
}

// observeUsage merges uses and returns the usage keys of the bindings whose
// state changed.
func (e *Engine) observeUsage(cs *clusterState, uses []rbacusage.Use) map[string]bool {
	dirty := map[string]bool{}
	for _, u := range uses {
		if cs.usage.Observe(u) {
			dirty[usageKey(u.Grant.Binding)] = true
		}
	}
	return dirty
}

// StartWatch records that the cluster is watched from at, unless it has
// been watched from earlier; it returns the watch start in effect.
func (e *Engine) StartWatch(cluster string, at time.Time) time.Time {
	cs := e.cluster(cluster)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.usage.SetWatchStart(at)
	return cs.usage.WatchStart()
}

// RejudgeUsage judges again every check that read a binding's usage: a
// binding turns unused, and a cluster becomes watched long enough, by time
// passing alone. The processor calls it on a timer.
func (e *Engine) RejudgeUsage(cluster string) []Decision {
	cs := e.cluster(cluster)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return e.rejudgeUsage(cs, nil)
}

// UsageReadTo records that the cluster's audit trail has been read up to
// at (it only moves forward). The rbac_usage helper judges up to the
// earlier of it and the clock: a use after the last read is not known yet,
// and judging up to the clock would call a binding unused whose latest
// use is unread (after a restart, or while reads fail).
func (e *Engine) UsageReadTo(cluster string, at time.Time) {
	cs := e.cluster(cluster)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.usage.SetReadTo(at)
}

// UsageChanged returns the usage tuples changed since the last call: what
// the store must write.
func (e *Engine) UsageChanged(cluster string) []rbacusage.Usage {
	cs := e.cluster(cluster)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.usage.TakeChanged()
}

// UsageTuples is the number of usage tuples the cluster keeps.
func (e *Engine) UsageTuples(cluster string) int {
	cs := e.cluster(cluster)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.usage.Len()
}

// rejudgeUsage judges the pairs filed under the given usage keys (all usage
// keys when nil). Each transition takes its binding's resourceVersion, which
// after() moves past the finding's previous transition: a usage change has
// no revision of its own.
func (e *Engine) rejudgeUsage(cs *clusterState, keys map[string]bool) []Decision {
	todo := map[pair]struct{}{}
	for k, ps := range cs.deps {
		if (keys == nil && strings.HasPrefix(k, "usage/")) || keys[k] {
			for p := range ps {
				todo[p] = struct{}{}
			}
		}
	}
	var out []Decision
	at := e.now()
	for p := range todo {
		if ent := cs.inv.objs[p.obj]; ent != nil {
			out = e.judge(cs, p.check, ent, ent.obj.ResourceVersion, at, out)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// RBACUsage implements rules.Inventory for the rbac_usage helper. For a
// RoleBinding or ClusterRoleBinding it answers, for the window that ends at
// the last read of the audit trail (UsageReadTo) or at the clock, whichever
// is earlier,
//
//	watched        the cluster has been watched for the whole window
//	watched_since  when watching began (absent when unknown)
//	window_days    the window
//	last_used      the binding's last use (absent: never seen used)
//	unused         watched, and not used within the window
//	used           "verb resource" of each pair used within the window
//	unused_grants  the role's broad grants the window did not need
//	               (rbacusage.Unused), when the binding was used in it
//	suggested_role the name of the narrower role `kubesift rbac usage`
//	               prints, when the binding was used in the window
//
// and nil for anything else. It reads the binding's usage and the role's
// rules, so both a use and a role change judge the caller again.
func (r *reader) RBACUsage(b map[string]any) map[string]any {
	kind := str(b["kind"])
	if r.usage == nil || (kind != "RoleBinding" && kind != "ClusterRoleBinding") {
		return nil
	}
	meta := asMap(b["metadata"])
	ref := rbacusage.Ref{Kind: kind, Name: str(meta["name"])}
	if kind == "RoleBinding" {
		ref.Namespace = str(meta["namespace"])
	}
	r.read(usageKey(ref))
	window := r.usage.window()
	now := r.usage.now()
	if rt := r.usage.t.ReadTo(); !rt.IsZero() && rt.Before(now) {
		now = rt // uses after the last read are unknown (UsageReadTo)
	}
	cutoff := now.Add(-window)
	start := r.usage.t.WatchStart()
	us := r.usage.t.Binding(ref)
	last := rbacusage.LastUsed(us)
	watched := !start.IsZero() && !start.After(cutoff)
	out := map[string]any{
		"watched":     watched,
		"window_days": int(window.Hours() / 24),
		"unused":      watched && last.Before(cutoff),
	}
	if !start.IsZero() {
		out["watched_since"] = start
	}
	if !last.IsZero() {
		out["last_used"] = last
	}
	used := rbacusage.Since(us, cutoff)
	names := make([]any, len(used))
	for i, p := range used {
		names[i] = p.String()
	}
	out["used"] = names
	if len(used) > 0 {
		roleRef := roleRefOf(b, ref.Namespace)
		grants := []any{}
		for _, g := range rbacusage.Unused(r.rulesOf(roleRef), used) {
			grants = append(grants, g)
		}
		out["unused_grants"] = grants
		// The name kubesift rbac usage prints: none where it suggests no
		// role (a RoleBinding used only for non-resource URLs).
		if sr := rbacusage.Suggest(ref, rbacusage.Ref{Kind: roleRef.kind, Name: roleRef.name}, used); sr != nil {
			out["suggested_role"] = sr.Name
		}
	}
	return out
}
