package rbacusage

import (
	"reflect"
	"slices"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
)

var (
	t0   = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	ci   = Grant{Binding: Ref{Kind: "ClusterRoleBinding", Name: "ci"}, Role: Ref{Kind: "ClusterRole", Name: "edit"}, Subject: Subject{Kind: "ServiceAccount", Namespace: "ci", Name: "deployer"}}
	ops  = Grant{Binding: Ref{Kind: "ClusterRoleBinding", Name: "ci"}, Role: Ref{Kind: "ClusterRole", Name: "edit"}, Subject: Subject{Kind: "Group", Name: "ops"}}
	get  = Pair{Verb: "get", Resource: "pods"}
	list = Pair{Verb: "list", Resource: "pods"}
	logs = Pair{Verb: "get", Resource: "pods", Subresource: "log"}
)

// TestObserve: merging is idempotent and order-free, and hands the store
// each changed tuple once.
func TestObserve(t *testing.T) {
	steps := []struct {
		name    string
		use     Use
		changed bool
	}{
		{"new tuple", Use{ci, get, t0.Add(-100 * 24 * time.Hour)}, true},
		{"same use again", Use{ci, get, t0.Add(-100 * 24 * time.Hour)}, false},
		{"older use of the pair", Use{ci, get, t0.Add(-200 * 24 * time.Hour)}, false},
		{"new pair, old time", Use{ci, list, t0.Add(-150 * 24 * time.Hour)}, true},
		{"used again inside the window", Use{ci, get, t0}, true},
		{"later use inside the window", Use{ci, logs, t0.Add(time.Hour)}, true},
		{"second subject", Use{ops, get, t0}, true},
	}
	tb := NewTable()
	for _, s := range steps {
		if changed := tb.Observe(s.use); changed != s.changed {
			t.Errorf("%s: changed=%v, want %v", s.name, changed, s.changed)
		}
	}
	if n := tb.Len(); n != 2 {
		t.Errorf("Len = %d, want 2", n)
	}
	us := tb.Binding(ci.Binding)
	if len(us) != 2 || us[0].Grant != ci || !us[0].LastUsed.Equal(t0.Add(time.Hour)) {
		t.Fatalf("Binding = %+v", us)
	}
	wantPairs := []PairUse{{get, t0}, {logs, t0.Add(time.Hour)}, {list, t0.Add(-150 * 24 * time.Hour)}}
	if !reflect.DeepEqual(us[0].Pairs, wantPairs) {
		t.Errorf("pairs = %+v, want %+v", us[0].Pairs, wantPairs)
	}
	if got := Since(us, t0.Add(-time.Hour)); !reflect.DeepEqual(got, []Pair{get, logs}) {
		t.Errorf("Since = %v", got)
	}
	if ch := tb.TakeChanged(); len(ch) != 2 {
		t.Errorf("TakeChanged = %d tuples, want 2", len(ch))
	}
	if ch := tb.TakeChanged(); len(ch) != 0 {
		t.Errorf("TakeChanged again = %d tuples, want 0", len(ch))
	}
	// A restore of what the store holds (the same state) in another table
	// gives the same usages, and merging it back changes nothing.
	other := NewTable()
	for _, u := range tb.All() {
		other.Restore(u)
	}
	if !reflect.DeepEqual(other.All(), tb.All()) {
		t.Errorf("restored %+v\nwant %+v", other.All(), tb.All())
	}
	for _, u := range tb.All() {
		tb.Restore(u)
	}
	if ch := tb.TakeChanged(); len(ch) != 0 {
		t.Errorf("restore of the same state changed %d tuples", len(ch))
	}
}

// TestWatchStartOnlyMovesBack: the watch start only moves back, and a
// time within a second rounds up (never watched longer than true).
func TestWatchStartOnlyMovesBack(t *testing.T) {
	tb := NewTable()
	for _, c := range []struct {
		set, want time.Time
	}{{time.Time{}, time.Time{}}, {t0.Add(-time.Millisecond), t0}, {t0.Add(time.Hour), t0}, {t0.Add(-time.Hour), t0.Add(-time.Hour)},
		{time.Time{}, t0.Add(-time.Hour)}} {
		tb.SetWatchStart(c.set)
		if !tb.WatchStart().Equal(c.want) {
			t.Errorf("after SetWatchStart(%v): %v, want %v", c.set, tb.WatchStart(), c.want)
		}
	}
}

// TestReadToOnlyMovesForward: a read that ends earlier (a restore of an
// older snapshot) does not take back what a later read covered.
func TestReadToOnlyMovesForward(t *testing.T) {
	tb := NewTable()
	for _, c := range []struct {
		set, want time.Time
	}{{time.Time{}, time.Time{}}, {t0, t0}, {t0.Add(-time.Hour), t0}, {time.Time{}, t0}, {t0.Add(time.Minute), t0.Add(time.Minute)}} {
		tb.SetReadTo(c.set)
		if !tb.ReadTo().Equal(c.want) {
			t.Errorf("after SetReadTo(%v): %v, want %v", c.set, tb.ReadTo(), c.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	rb := Ref{Kind: "RoleBinding", Namespace: "shop", Name: "web"}
	crb := Ref{Kind: "ClusterRoleBinding", Name: "ci"}
	edit := Ref{Kind: "ClusterRole", Name: "edit"}
	cases := []struct {
		name    string
		binding Ref
		used    []Pair
		want    *SuggestedRole
	}{
		{"nothing used", crb, nil, nil},
		{"RoleBinding of a ClusterRole gets a Role in its namespace", rb, []Pair{get, list, logs, {Verb: "get", Resource: "healthz-ignored", NonResourceURL: "/healthz"}},
			&SuggestedRole{Kind: "Role", Namespace: "shop", Name: "edit-used", Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
				{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}}}}},
		{"resources with the same verbs share a rule; groups apart; URLs last", crb, []Pair{
			get, {Verb: "get", Resource: "configmaps"}, {Verb: "patch", APIGroup: "apps", Resource: "deployments"},
			{Verb: "get", NonResourceURL: "/metrics"}},
			&SuggestedRole{Kind: "ClusterRole", Name: "edit-used", Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"configmaps", "pods"}, Verbs: []string{"get"}},
				{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"patch"}},
				{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Suggest(tc.binding, edit, tc.used)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestUnused(t *testing.T) {
	rule := func(groups, res, verbs []any) any {
		return map[string]any{"apiGroups": groups, "resources": res, "verbs": verbs}
	}
	cases := []struct {
		name  string
		rules []any
		used  []Pair
		want  []string
	}{
		{"exact grant", []any{rule([]any{""}, []any{"pods"}, []any{"get"})}, []Pair{get}, nil},
		{"more ordinary verbs", []any{rule([]any{""}, []any{"pods"}, []any{"get", "list", "delete"})}, []Pair{get}, nil},
		{"wildcards", []any{rule([]any{"*"}, []any{"*"}, []any{"*"})}, []Pair{get}, []string{`"*" in verbs`, `"*" in resources`, `"*" in apiGroups`}},
		{"secrets unused", []any{rule([]any{""}, []any{"pods", "secrets"}, []any{"get"})}, []Pair{get}, []string{"get secrets"}},
		{"secrets used", []any{rule([]any{""}, []any{"secrets"}, []any{"get"})}, []Pair{{Verb: "get", Resource: "secrets"}}, nil},
		{"secrets of another group", []any{rule([]any{"acme.io"}, []any{"secrets"}, []any{"get"})}, []Pair{get}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Unused(tc.rules, tc.used); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestReport: one row per binding and role with its subjects, least
// recently used first; pairs and the suggestion only from the period.
func TestReport(t *testing.T) {
	day := 24 * time.Hour
	old := Grant{Binding: Ref{Kind: "RoleBinding", Namespace: "shop", Name: "old"}, Role: Ref{Kind: "Role", Namespace: "shop", Name: "r"}, Subject: Subject{Kind: "User", Name: "bob"}}
	snap := Snapshot{Usages: []Usage{
		{Grant: ci, LastUsed: t0, Pairs: []PairUse{{get, t0}, {list, t0.Add(-40 * day)}}},
		{Grant: ops, LastUsed: t0.Add(-time.Hour), Pairs: []PairUse{{logs, t0.Add(-time.Hour)}}},
		{Grant: old, LastUsed: t0.Add(-50 * day), Pairs: []PairUse{{get, t0.Add(-50 * day)}}},
	}}
	got := Report("prod", snap, t0.Add(-30*day))
	if len(got) != 2 {
		t.Fatalf("%d rows: %+v", len(got), got)
	}
	if r := got[0]; r.Binding != old.Binding || len(r.Used) != 0 || r.Suggested != nil || !r.LastUsed.Equal(t0.Add(-50*day)) {
		t.Errorf("first row (least recently used) %+v", r)
	}
	r := got[1]
	if r.Binding != ci.Binding || len(r.Subjects) != 2 || r.Subjects[0] != ops.Subject || !r.LastUsed.Equal(t0) ||
		!reflect.DeepEqual(r.Used, []string{"get pods", "get pods/log"}) || r.Suggested == nil || r.Suggested.Kind != "ClusterRole" {
		t.Errorf("second row %+v", r)
	}
}

// allows is RBAC's rule match for a resource request (exact names; the
// suggested roles hold no wildcards).
func allows(rules []rbacv1.PolicyRule, p Pair) bool {
	res := p.Resource
	if p.Subresource != "" {
		res += "/" + p.Subresource
	}
	for _, r := range rules {
		if p.NonResourceURL != "" {
			if slices.Contains(r.NonResourceURLs, p.NonResourceURL) && slices.Contains(r.Verbs, p.Verb) {
				return true
			}
			continue
		}
		if slices.Contains(r.APIGroups, p.APIGroup) && slices.Contains(r.Resources, res) && slices.Contains(r.Verbs, p.Verb) {
			return true
		}
	}
	return false
}

// FuzzSuggest: whatever subset of a small universe of pairs was used, the
// suggested role allows each used pair and no other pair of the universe
// (non-resource URLs only in a ClusterRole).
func FuzzSuggest(f *testing.F) {
	f.Add(uint64(0b1011), false)
	f.Add(uint64(1<<33|1<<3), true)
	verbs := []string{"get", "list", "create", "delete"}
	var universe []Pair
	for _, g := range []string{"", "apps"} {
		for _, r := range []string{"pods", "configmaps"} {
			for _, sub := range []string{"", "log"} {
				for _, v := range verbs {
					universe = append(universe, Pair{Verb: v, APIGroup: g, Resource: r, Subresource: sub})
				}
			}
		}
	}
	universe = append(universe, Pair{Verb: "get", NonResourceURL: "/healthz"}, Pair{Verb: "post", NonResourceURL: "/metrics"})
	f.Fuzz(func(t *testing.T, mask uint64, roleBinding bool) {
		var used []Pair
		for i, p := range universe {
			if mask&(1<<i) != 0 { // the universe has fewer than 64 pairs
				used = append(used, p)
			}
		}
		b := Ref{Kind: "ClusterRoleBinding", Name: "b"}
		if roleBinding {
			b = Ref{Kind: "RoleBinding", Namespace: "ns", Name: "b"}
		}
		s := Suggest(b, Ref{Kind: "ClusterRole", Name: "r"}, used)
		var rules []rbacv1.PolicyRule
		if s != nil {
			rules = s.Rules
		}
		for _, p := range universe {
			want := slices.Contains(used, p) && !(roleBinding && p.NonResourceURL != "")
			if got := allows(rules, p); got != want {
				t.Fatalf("used %v: %s allowed=%v, want %v (rules %+v)", used, p, got, want, rules)
			}
		}
	})
}
