package posture

import (
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"testing"
)

// stateIndex stands in for the Elasticsearch state index: one document per
// finding, replaced only by a transition whose version (as
// ecs.FindingVersion computes it: 2 × resourceVersion, plus 1 when
// resolved) is greater. write fails the test for a transition the index
// would refuse, which is the package doc's ordering invariant, and returns
// ds.
type stateIndex map[string]Decision

func order(t testing.TB, d Decision) int64 {
	t.Helper()
	rv, err := strconv.ParseInt(d.ResourceVersion, 10, 64)
	if err != nil {
		t.Fatalf("%s %s: resourceVersion %q is not a revision", d.ID, d.State, d.ResourceVersion)
	}
	v := 2 * rv
	if d.State == StateResolved {
		v++
	}
	return v
}

func (s stateIndex) write(t testing.TB, ds []Decision) []Decision {
	t.Helper()
	for _, d := range ds {
		if old, ok := s[d.ID]; ok && order(t, d) <= order(t, old) {
			t.Errorf("%s %s at %s after %s at %s: the state index refuses it as stale", d.ID, d.State, d.ResourceVersion, old.State, old.ResourceVersion)
			continue
		}
		s[d.ID] = d
	}
	return ds
}

// decisions is what a restarted processor reads back for Restore.
func (s stateIndex) decisions() []Decision {
	out := make([]Decision, 0, len(s))
	for _, d := range s {
		out = append(out, d)
	}
	return out
}

func (s stateIndex) open() []string {
	var out []string
	for id, d := range s {
		if d.Open() {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

const nsCheck = "posture-namespace-without-network-policy"

// TestTransitionVersionsOrder: every transition of a finding orders after
// the one before it in the state index, including those caused by a change
// the engine cannot name (a dependency deleted, by Delete or while no
// process watched).
func TestTransitionVersionsOrder(t *testing.T) {
	at := func(o Object, rv string) Object { o.ResourceVersion = rv; return o }
	restart := func(t *testing.T, idx stateIndex, objs ...Object) (*Engine, []Decision) {
		e := New(builtin(t))
		e.Restore(cl, idx.decisions())
		ds, err := e.Replace(cl, objs)
		if err != nil {
			t.Fatal(err)
		}
		return e, ds
	}
	cases := []struct {
		name string
		// run feeds the engine after a Namespace at 5 opened the finding
		// and a NetworkPolicy at 12 resolved it; it writes every
		// transition that follows to idx and returns them.
		run  func(t *testing.T, e *Engine, idx stateIndex, ns, np Object) []Decision
		want []string // the finding's transitions after open@5, resolved@12
	}{
		// The snapshot's highest resourceVersion (11) is below the
		// resolve's 12: stamping a rebuild with it would not be enough.
		{"rebuild reopens what a deleted dependency had resolved", func(t *testing.T, _ *Engine, idx stateIndex, ns, _ Object) []Decision {
			_, ds := restart(t, idx, ns, at(obj(t, goodServiceAccount), "11"))
			return idx.write(t, ds)
		}, []string{"reopened@13"}},
		{"rebuild after the object itself changed keeps its version", func(t *testing.T, _ *Engine, idx stateIndex, ns, _ Object) []Decision {
			_, ds := restart(t, idx, at(with(t, ns, "metadata.labels.team", "a"), "20"))
			return idx.write(t, ds)
		}, []string{"reopened@20"}},
		{"Delete of the dependency reopens", func(t *testing.T, e *Engine, idx stateIndex, _, _ Object) []Decision {
			return idx.write(t, e.Delete(cl, "NetworkPolicy", "shop", "deny-all"))
		}, []string{"reopened@13"}},
		{"object deleted after a dependency moved its finding on", func(t *testing.T, e *Engine, idx stateIndex, _, _ Object) []Decision {
			ds := e.Delete(cl, "NetworkPolicy", "shop", "deny-all")
			idx.write(t, ds)
			return append(ds, idx.write(t, e.Delete(cl, "Namespace", "", "shop"))...)
		}, []string{"reopened@13", "resolved@13"}},
		{"rebuild resolves a finding whose object is gone", func(t *testing.T, e *Engine, idx stateIndex, _, _ Object) []Decision {
			ds := e.Delete(cl, "NetworkPolicy", "shop", "deny-all")
			idx.write(t, ds)
			_, more := restart(t, idx)
			return append(ds, idx.write(t, more)...)
		}, []string{"reopened@13", "resolved@13"}},
		{"dependency back after a rebuild reopened", func(t *testing.T, _ *Engine, idx stateIndex, ns, np Object) []Decision {
			e, ds := restart(t, idx, ns)
			idx.write(t, ds)
			return append(ds, idx.write(t, apply(t, e, at(np, "14")))...)
		}, []string{"reopened@13", "resolved@14"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, idx := New(builtin(t)), stateIndex{}
			ns, np := at(obj(t, goodNamespace), "5"), at(obj(t, goodDenyAll), "12")
			idx.write(t, apply(t, e, ns))
			idx.write(t, apply(t, e, np))
			id := cl + "/" + nsCheck + "/" + ns.UID
			if d := idx[id]; d.State != StateResolved || d.ResourceVersion != "12" {
				t.Fatalf("setup: %s %s@%s, want resolved@12", id, d.State, d.ResourceVersion)
			}
			ds := tc.run(t, e, idx, ns, np)
			var got []string
			for _, d := range ds {
				if d.ID == id {
					got = append(got, string(d.State)+"@"+d.ResourceVersion)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("transitions %v, want %v", got, tc.want)
			}
		})
	}
}

// world is the cluster a transitionScript changes: a few objects whose
// checks read one another (a Namespace and its NetworkPolicy, a Deployment
// and the ClusterRoleBinding of its ServiceAccount), each present or not.
type world struct {
	t       testing.TB
	rv, gen int
	objs    map[string]Object // by kind
}

func (w *world) next() string { w.rv++; return strconv.Itoa(w.rv) }

// toggle creates the object of kind from doc (a new uid) or, when
// present, changes path between two values (a new resourceVersion).
func (w *world) toggle(kind, doc, path string, a, b any) Object {
	o, ok := w.objs[kind]
	if !ok {
		w.gen++
		o = obj(w.t, doc)
		o.UID += "-" + strconv.Itoa(w.gen)
	} else if str(asMap(asMap(o.Body["metadata"])["labels"])["flip"]) == "a" {
		o = with(w.t, with(w.t, o, path, b), "metadata.labels.flip", "b")
	} else {
		o = with(w.t, with(w.t, o, path, a), "metadata.labels.flip", "a")
	}
	o.ResourceVersion = w.next()
	w.objs[kind] = o
	return o
}

func (w *world) list() []Object {
	out := make([]Object, 0, len(w.objs))
	for _, o := range w.objs {
		out = append(out, o)
	}
	return out
}

const webAdminBinding = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: web-admin}
roleRef: {kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: web, namespace: shop}]
`

// transitionScript runs the operations script spells (one byte each:
// changes, deletes, the processor going down while the cluster changes,
// a restart with Restore and Replace, a Replace on the running engine)
// and checks after every one that the state index accepts each
// transition and ends up with the engine's open findings.
func transitionScript(t testing.TB, script []byte) {
	w := &world{t: t, objs: map[string]Object{}}
	for _, doc := range []string{clusterAdminRole, goodServiceAccount} {
		o := obj(t, doc)
		o.ResourceVersion = w.next()
		w.objs[o.Kind] = o
	}
	e, idx, up := New(builtin(t)), stateIndex{}, true
	replace := func() {
		ds, err := e.Replace(cl, w.list())
		if err != nil {
			t.Fatal(err)
		}
		idx.write(t, ds)
	}
	replace()
	change := func(o Object) {
		if up {
			ds, err := e.Apply(cl, o)
			if err != nil {
				t.Fatal(err)
			}
			idx.write(t, ds)
		}
	}
	remove := func(kind string) {
		o, ok := w.objs[kind]
		if !ok {
			return
		}
		delete(w.objs, kind)
		w.next() // the delete is a revision of its own
		if up {
			idx.write(t, e.Delete(cl, kind, o.Namespace, o.Name))
		}
	}
	flip := func(kind, doc string) { // deletes the object, or creates it
		if _, ok := w.objs[kind]; ok {
			remove(kind)
		} else {
			change(w.toggle(kind, doc, "", nil, nil))
		}
	}
	for i, op := range script {
		switch op % 10 {
		case 0:
			change(w.toggle("Namespace", goodNamespace, "metadata.labels", map[string]any{},
				map[string]any{"pod-security.kubernetes.io/enforce": "restricted"}))
		case 1:
			remove("Namespace")
		case 2:
			flip("NetworkPolicy", goodDenyAll)
		case 3:
			change(w.toggle("Deployment", goodDeployment, "spec.template.spec.hostPID", true, false))
		case 4:
			remove("Deployment")
		case 5:
			flip("ClusterRoleBinding", webAdminBinding)
		case 6, 7:
			up = false
		case 8: // a restart: what was written is restored, then rebuilt
			e, up = New(builtin(t)), true
			e.Restore(cl, idx.decisions())
			replace()
		case 9: // a rebuild of the running engine (a rebalance)
			if up {
				replace()
			}
		}
		if up {
			if got, want := findingIDs(e.Findings(cl)), idx.open(); !slices.Equal(got, want) {
				t.Fatalf("after operation %d (%d) of %v: engine's open findings %v, state index's %v", i, op%10, script, got, want)
			}
		}
		if t.Failed() {
			t.Fatalf("script %v failed at operation %d", script, i)
		}
	}
}

func findingIDs(ds []Decision) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.ID)
	}
	sort.Strings(out)
	return out
}

// TestTransitionOrderRandomSequences runs random scripts (seeded, so a
// failure repeats) of changes, deletes, outages and restarts.
func TestTransitionOrderRandomSequences(t *testing.T) {
	for seed := uint64(1); seed <= 150; seed++ {
		r := rand.New(rand.NewPCG(seed, 0))
		script := make([]byte, 40)
		for i := range script {
			script[i] = byte(r.IntN(10))
		}
		transitionScript(t, script)
	}
}

// FuzzTransitionOrder explores scripts beyond the random ones.
func FuzzTransitionOrder(f *testing.F) {
	f.Add([]byte{0, 2, 6, 2, 8})       // a dependency deleted while down
	f.Add([]byte{0, 2, 2, 1, 8})       // reopened by Delete, then the object deleted
	f.Add([]byte{3, 5, 6, 5, 3, 8, 9}) // a binding and its workload changed while down
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > 200 {
			script = script[:200]
		}
		transitionScript(t, script)
	})
}

func TestRVNext(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"12", "13"}, {"19", "20"}, {"999", "1000"}, {"0", "1"},
		{"", ""}, {"12a", "12a"}, {"-1", "-1"}, // not revisions: unchanged
	} {
		if got := rvNext(tc.in); got != tc.want {
			t.Errorf("rvNext(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
