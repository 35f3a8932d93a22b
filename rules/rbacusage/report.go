package rbacusage

import (
	"sort"
	"time"
)

// BindingReport is one binding's use over a period: what `kubesift rbac
// usage` prints.
type BindingReport struct {
	Cluster  string    `json:"cluster"`
	Binding  Ref       `json:"binding"`
	Role     Ref       `json:"role"`
	Subjects []Subject `json:"subjects"`
	// LastUsed is the binding's last use, within the period or not.
	LastUsed time.Time `json:"last_used"`
	// Used are the pairs used since the period's start ("verb resource").
	Used []string `json:"used"`
	// Suggested allows exactly Used; nil when nothing was used.
	Suggested *SuggestedRole `json:"suggested_role,omitempty"`
}

// Report groups a cluster's stored usage by binding and role, each with
// its subjects, last use, the pairs used since since and the role Suggest
// derives from them. Bindings are listed least recently used first; only
// bindings that allowed at least one request since the watch began are
// known to the usage state (a binding never used is reported by the
// posture check posture-rbac-unused-binding, which sees the inventory).
func Report(cluster string, snap Snapshot, since time.Time) []BindingReport {
	type bk struct{ binding, role Ref }
	byBinding := map[bk][]Usage{}
	for _, u := range snap.Usages {
		k := bk{u.Grant.Binding, u.Grant.Role}
		byBinding[k] = append(byBinding[k], u)
	}
	out := make([]BindingReport, 0, len(byBinding))
	for k, us := range byBinding {
		r := BindingReport{Cluster: cluster, Binding: k.binding, Role: k.role, LastUsed: LastUsed(us), Used: []string{}}
		for _, u := range us {
			r.Subjects = append(r.Subjects, u.Grant.Subject)
		}
		sort.Slice(r.Subjects, func(i, j int) bool { return r.Subjects[i].String() < r.Subjects[j].String() })
		pairs := Since(us, since)
		for _, p := range pairs {
			r.Used = append(r.Used, p.String())
		}
		r.Suggested = Suggest(k.binding, k.role, pairs)
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].LastUsed.Equal(out[j].LastUsed) {
			return out[i].LastUsed.Before(out[j].LastUsed)
		}
		return out[i].Binding.String() < out[j].Binding.String()
	})
	return out
}
