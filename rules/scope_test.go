package rules

import (
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/record"
)

// durableRules has one rule of every stateful kind.
var durableRules = map[string]string{"s.yaml": `
rules:
  - {id: forbidden-burst, title: t, severity: high, source: audit, condition: 'decision == "forbid"', group_by: [user], threshold: {count: 3, window: 1m}}
  - {id: burst-cooldown, title: t, severity: high, source: audit, condition: 'decision == "forbid"', group_by: [user], threshold: {count: 2, window: 1m, cooldown: 2m}}
  - id: many-secrets
    title: t
    severity: high
    source: audit
    condition: verb == "get" && resource == "secrets"
    group_by: [user]
    distinct: {field: 'namespace + "/" + name', count: 3, window: 5m}
` + bindThenExec + `  - id: three-steps
    title: t
    severity: low
    source: audit
    group_by: [user]
    sequence:
      within: 10m
      steps:
        - condition: verb == "list" && resource == "secrets"
        - condition: verb == "get" && resource == "secrets"
        - condition: verb == "delete" && resource == "secrets"
  - {id: first-exec, title: t, severity: low, source: audit, condition: 'resource == "pods" && subresource == "exec"', group_by: [user], new_term: {lookback: 168h}}
`}

// durableRecords is a deterministic mix of records that every rule of
// durableRules alerts on several times, one every 7 s of event time.
func durableRecords(t testing.TB, n int) []*record.Record {
	t.Helper()
	rnd := rand.New(rand.NewSource(19))
	users := []string{"ann", "bob", "cid"}
	forbid := `,"annotations":{"authorization.k8s.io/decision":"forbid"}`
	exec := `,"objectRef":{"resource":"pods","namespace":"ns","name":"p","subresource":"exec"}`
	out := make([]*record.Record, n)
	for i := range out {
		u := users[rnd.Intn(len(users))]
		at := t0.Add(time.Duration(i) * 7 * time.Second)
		switch rnd.Intn(7) {
		case 0:
			out[i] = auditRec(t, i, at, "get", "pods", "ns", "x", u, forbid)
		case 1:
			out[i] = auditRec(t, i, at, "get", "secrets", "ns", fmt.Sprint("s", rnd.Intn(4)), u, "")
		case 2:
			binding := fmt.Sprintf(`,"requestObject":{"kind":"ClusterRoleBinding","roleRef":{"name":"cluster-admin"},"subjects":[{"kind":"User","name":%q}]}`, u)
			out[i] = auditRec(t, i, at, "create", "clusterrolebindings", "", "b", "admin", binding)
		case 3:
			if rnd.Intn(2) == 0 {
				u += fmt.Sprint(rnd.Intn(3)) // new_term: a few more terms
			}
			out[i] = auditRec(t, i, at, "create", "pods", "ns", "p", u, exec)
		case 4:
			out[i] = auditRec(t, i, at, "list", "secrets", "ns", "", u, "")
		case 5:
			out[i] = auditRec(t, i, at, "delete", "secrets", "ns", "s0", u, "")
		default:
			out[i] = auditRec(t, i, at, "get", "configmaps", "ns", "c", u, "")
		}
	}
	return out
}

// changelog is an in-memory stand-in for one changelog partition: the
// messages in the order written.
type changelog struct{ msgs []StateChange }

func (c *changelog) write(ch []StateChange) { c.msgs = append(c.msgs, ch...) }

// restore applies the whole log to sc, failing on any error.
func (c *changelog) restore(t *testing.T, sc *Scope) map[RestoreResult]int {
	t.Helper()
	n := map[RestoreResult]int{}
	for _, m := range c.msgs {
		res, err := sc.Restore(m.Key, m.Value)
		if err != nil {
			t.Fatalf("restore of %q: %v", m.Key, err)
		}
		n[res]++
	}
	return n
}

func newDurableEngine(t *testing.T, dir string, maxGroups int) *Engine {
	t.Helper()
	e, err := New(LoadOptions{NoBuiltin: true, Dirs: []string{dir}, MaxGroups: maxGroups})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// feed evaluates recs[from:to] in sc (offset = index), writing each
// record's changes to log while the record is below logTo, and returns the
// alert IDs raised.
func feed(e *Engine, sc *Scope, recs []*record.Record, from, to, logTo int, log *changelog) []string {
	var ids []string
	for i := from; i < to; i++ {
		for _, a := range e.EvalIn(recs[i], sc, int64(i)) {
			ids = append(ids, a.ID)
		}
		if ch := sc.Drain(); i < logTo {
			log.write(ch)
		}
	}
	return ids
}

func distinctSorted(ids []string) []string {
	slices.Sort(ids)
	return slices.Compact(ids)
}

// TestScopeSurvivesRestart: a processor evaluates records up to crash,
// its changelog holds the changes of the records below logged (the rest
// were not acknowledged yet), its offsets are committed below committed; a
// new processor restores the changelog and re-reads from committed. The
// distinct alerts of both equal those of one uninterrupted run: no window
// restarts empty, no record counts twice, no alert is lost.
func TestScopeSurvivesRestart(t *testing.T) {
	dir := writeRules(t, durableRules)
	recs := durableRecords(t, 400)
	ref := newDurableEngine(t, dir, 0)
	want := distinctSorted(feed(ref, ref.NewScope(ScopeOptions{Topic: "audit"}), recs, 0, len(recs), 0, &changelog{}))
	perRule := map[string]int{}
	for _, id := range want {
		rule, _, _ := strings.Cut(id, ":") // "<rule>:<record id>"
		perRule[rule]++
	}
	for _, r := range ref.Set().Rules() {
		if perRule[r.ID] == 0 {
			t.Fatalf("rule %s raised no alert in the reference run (%v): the records do not exercise it", r.ID, perRule)
		}
	}
	tests := []struct{ crash, logged, committed int }{
		{crash: 200, logged: 200, committed: 200}, // clean stop
		{crash: 200, logged: 200, committed: 150}, // changes durable, offsets behind
		{crash: 200, logged: 170, committed: 150}, // the last changes lost with the crash
		{crash: 37, logged: 30, committed: 0},
		{crash: 399, logged: 390, committed: 388},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("crash@%d logged<%d committed<%d", tc.crash, tc.logged, tc.committed), func(t *testing.T) {
			log := &changelog{}
			first := newDurableEngine(t, dir, 0)
			got := feed(first, first.NewScope(ScopeOptions{Topic: "audit"}), recs, 0, tc.crash, tc.logged, log)
			second := newDurableEngine(t, dir, 0)
			sc := second.NewScope(ScopeOptions{Topic: "audit"})
			log.restore(t, sc)
			got = distinctSorted(append(got, feed(second, sc, recs, tc.committed, len(recs), 0, log)...))
			if !slices.Equal(got, want) {
				t.Errorf("alerts differ from an uninterrupted run:\n missing %v\n extra   %v", minus(want, got), minus(got, want))
			}
		})
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// TestScopeNewTermKnownAfterRestore: a term seen before the restart does
// not alert again after it; a new one does.
func TestScopeNewTermKnownAfterRestore(t *testing.T) {
	dir := writeRules(t, durableRules)
	exec := `,"objectRef":{"resource":"pods","namespace":"ns","name":"p","subresource":"exec"}`
	log := &changelog{}
	e := newDurableEngine(t, dir, 0)
	sc := e.NewScope(ScopeOptions{Topic: "audit"})
	if a := e.EvalIn(auditRec(t, 1, t0, "create", "pods", "ns", "p", "ann", exec), sc, 0); len(a) != 1 {
		t.Fatalf("first exec: %d alerts, want 1", len(a))
	}
	log.write(sc.Drain())

	e2 := newDurableEngine(t, dir, 0)
	sc2 := e2.NewScope(ScopeOptions{Topic: "audit"})
	log.restore(t, sc2)
	if a := e2.EvalIn(auditRec(t, 2, t0.Add(time.Hour), "create", "pods", "ns", "p", "ann", exec), sc2, 1); len(a) != 0 {
		t.Errorf("known term after restore: %v, want no alert", a)
	}
	if a := e2.EvalIn(auditRec(t, 3, t0.Add(time.Hour), "create", "pods", "ns", "p", "bob", exec), sc2, 2); len(a) != 1 {
		t.Errorf("new term after restore: %d alerts, want 1", len(a))
	}
}

// TestScopeExpiry: groups whose window is over become tombstones marked
// expired once the partition's event time moves past them; new_term terms
// go after their lookback capped by NewTermHorizon.
func TestScopeExpiry(t *testing.T) {
	dir := writeRules(t, durableRules)
	forbid := `,"annotations":{"authorization.k8s.io/decision":"forbid"}`
	exec := `,"objectRef":{"resource":"pods","namespace":"ns","name":"p","subresource":"exec"}`
	tests := []struct {
		name      string
		first     *record.Record
		later     time.Duration // event time of the second record (another user)
		horizon   time.Duration
		rule      string
		wantGone  bool
		wantTombs int
	}{
		{"threshold inside its window stays", auditRec(t, 1, t0, "get", "pods", "ns", "x", "ann", forbid), 30 * time.Second, 0, "forbidden-burst", false, 0},
		{"threshold past its window expires", auditRec(t, 1, t0, "get", "pods", "ns", "x", "ann", forbid), 10 * time.Minute, 0, "forbidden-burst", true, 1},
		{"cooldown keeps a group past its window", auditRec(t, 1, t0, "get", "pods", "ns", "x", "ann", forbid), 90 * time.Second, 0, "burst-cooldown", false, 0},
		{"new term within lookback stays", auditRec(t, 1, t0, "create", "pods", "ns", "p", "ann", exec), 100 * time.Hour, 0, "first-exec", false, 0},
		{"new term past its horizon expires", auditRec(t, 1, t0, "create", "pods", "ns", "p", "ann", exec), 100 * time.Hour, 24 * time.Hour, "first-exec", true, 1},
		{"new term past its lookback expires", auditRec(t, 1, t0, "create", "pods", "ns", "p", "ann", exec), 200 * time.Hour, 0, "first-exec", true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newDurableEngine(t, dir, 0)
			sc := e.NewScope(ScopeOptions{Topic: "audit", NewTermHorizon: tc.horizon})
			e.EvalIn(tc.first, sc, 0)
			sc.Drain()
			e.EvalIn(auditRec(t, 2, t0.Add(tc.later), "get", "configmaps", "ns", "c", "zed", ""), sc, 1)
			var tombs int
			for _, ch := range sc.Drain() {
				_, rule, group, err := parseStateKey(ch.Key)
				if err != nil {
					t.Fatal(err)
				}
				if rule == tc.rule && group == "ann" && ch.Value == nil && ch.Reason == ReasonExpired {
					tombs++
				}
			}
			// Rules the second record did not reach are swept at least
			// every sweepEvery records.
			for i := range sweepEvery {
				e.EvalIn(auditRec(t, 3+i, t0.Add(tc.later), "get", "configmaps", "ns", "c", "zed", ""), sc, int64(2+i))
				for _, ch := range sc.Drain() {
					if _, rule, group, _ := parseStateKey(ch.Key); rule == tc.rule && group == "ann" && ch.Reason == ReasonExpired {
						tombs++
					}
				}
			}
			if tombs != tc.wantTombs {
				t.Errorf("expired tombstones of %s/ann: %d, want %d", tc.rule, tombs, tc.wantTombs)
			}
			if gone := sc.states[tc.rule].st.groups() == 0; gone != tc.wantGone {
				t.Errorf("group gone = %v, want %v", gone, tc.wantGone)
			}
		})
	}
}

// TestScopeMaxBytes: past MaxBytes the least recently used groups go, each
// with a tombstone, and what is kept stays within the bound.
func TestScopeMaxBytes(t *testing.T) {
	dir := writeRules(t, durableRules)
	exec := `,"objectRef":{"resource":"pods","namespace":"ns","name":"p","subresource":"exec"}`
	for _, maxBytes := range []int64{0, 200, 1000} {
		t.Run(fmt.Sprint(maxBytes), func(t *testing.T) {
			e := newDurableEngine(t, dir, 0)
			sc := e.NewScope(ScopeOptions{Topic: "audit", MaxBytes: maxBytes})
			evicted := 0
			var log changelog
			for i := range 100 {
				e.EvalIn(auditRec(t, i, t0.Add(time.Duration(i)*time.Second), "create", "pods", "ns", "p", fmt.Sprint("user-", i), exec), sc, int64(i))
				ch := sc.Drain()
				log.write(ch)
				for _, ch := range ch {
					if _, rule, _, _ := parseStateKey(ch.Key); rule == "first-exec" && ch.Reason == ReasonEvicted {
						evicted++
					}
				}
			}
			st := sc.states["first-exec"]
			l := st.st.(*newTermState).lru
			if maxBytes > 0 && (l.bytes > maxBytes || evicted == 0 || evicted+len(l.m) != 100) {
				t.Errorf("bytes %d (bound %d), %d groups kept, %d evicted; want within the bound and every group kept or evicted", l.bytes, maxBytes, len(l.m), evicted)
			}
			if maxBytes == 0 && (evicted != 0 || len(l.m) != 100) {
				t.Errorf("no bound: %d evicted, %d kept; want 0 and 100", evicted, len(l.m))
			}
			if _, ok := l.m["user-99"]; !ok {
				t.Error("the most recent group was evicted")
			}
			// A restore counts the bytes as the writes did, so the bound
			// holds the same after a restart.
			restored := e.NewScope(ScopeOptions{Topic: "audit", MaxBytes: maxBytes})
			log.restore(t, restored)
			rl := restored.states["first-exec"].st.(*newTermState).lru
			if rl.bytes != l.bytes || len(rl.m) != len(l.m) {
				t.Errorf("restored %d groups of %d bytes, want %d of %d", len(rl.m), rl.bytes, len(l.m), l.bytes)
			}
		})
	}
}

// annExecEntry is the changelog entry e makes for user ann's first exec
// (rule first-exec), and its value as a changed definition of the rule
// would have written it (another fingerprint).
func annExecEntry(t *testing.T, e *Engine) (good StateChange, changed []byte) {
	t.Helper()
	sc := e.NewScope(ScopeOptions{Topic: "audit"})
	exec := `,"objectRef":{"resource":"pods","namespace":"ns","name":"p","subresource":"exec"}`
	e.EvalIn(auditRec(t, 1, t0, "create", "pods", "ns", "p", "ann", exec), sc, 0)
	good = sc.Drain()[0]
	h, payload, err := parseHeader(good.Value)
	if err != nil {
		t.Fatal(err)
	}
	return good, append(appendHeader(nil, valueHeader{kind: h.kind, fp: h.fp + 1, pos: h.pos}), payload...)
}

// TestScopeRestoreStaleAndBad: entries of a rule that changed or is gone
// are deleted (a tombstone at the next Drain); another topic's entries are
// left alone; malformed ones are errors naming the problem and restore
// nothing.
func TestScopeRestoreStaleAndBad(t *testing.T) {
	e := newDurableEngine(t, writeRules(t, durableRules), 0)
	good, changed := annExecEntry(t, e)
	tests := []struct {
		name       string
		key, value []byte
		want       RestoreResult
		wantErr    bool
	}{
		{"current", good.Key, good.Value, Restored, false},
		{"tombstone", good.Key, nil, Restored, false},
		{"other topic", stateKey("events", "first-exec", "ann"), good.Value, OtherTopic, false},
		{"changed rule", good.Key, changed, Stale, false},
		{"gone rule", stateKey("audit", "no-such-rule", "ann"), good.Value, Stale, false},
		{"truncated value", good.Key, good.Value[:len(good.Value)-1], 0, true},
		{"trailing bytes", good.Key, append(slices.Clone(good.Value), 0), 0, true},
		{"short header", good.Key, good.Value[:5], 0, true},
		{"bad version", good.Key, append([]byte{9}, good.Value[1:]...), 0, true},
		{"bad key", []byte{0xff}, good.Value, 0, true},
		{"wrong kind", good.Key, append([]byte{codecVersion, kindThreshold}, good.Value[2:]...), 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := e.NewScope(ScopeOptions{Topic: "audit"})
			res, err := sc.Restore(tc.key, tc.value)
			if (err != nil) != tc.wantErr || err != nil && !errors.Is(err, ErrStateValue) {
				t.Fatalf("err = %v, want error %v wrapping ErrStateValue", err, tc.wantErr)
			}
			if err == nil && res != tc.want {
				t.Errorf("result %v, want %v", res, tc.want)
			}
			stale := 0
			for _, ch := range sc.Drain() {
				if ch.Reason == ReasonStale && ch.Value == nil {
					stale++
				}
				if ch.Reason == ReasonCheckpoint {
					t.Errorf("a checkpoint (%q) before any record was evaluated", ch.Value)
				}
			}
			if want := map[bool]int{true: 1}[tc.want == Stale && !tc.wantErr]; stale != want {
				t.Errorf("stale tombstones %d, want %d", stale, want)
			}
			if tc.wantErr && sc.Groups() != 0 {
				t.Errorf("a bad entry left %d groups", sc.Groups())
			}
		})
	}
}

// TestScopeRestoreLatestWins: as compaction would, the last entry of a
// group decides: a current value after a stale one keeps the group and
// deletes nothing; a stale, malformed or tombstone entry after a current
// value leaves the group empty, and only a stale one is deleted.
func TestScopeRestoreLatestWins(t *testing.T) {
	e := newDurableEngine(t, writeRules(t, durableRules), 0)
	good, stale := annExecEntry(t, e)
	bad := good.Value[:len(good.Value)-1]
	tests := []struct {
		name       string
		values     [][]byte
		wantGroups int
		wantTombs  int
	}{
		{"stale then current", [][]byte{stale, good.Value}, 1, 0},
		{"current then stale", [][]byte{good.Value, stale}, 0, 1},
		{"current then malformed", [][]byte{good.Value, bad}, 0, 0},
		{"current then tombstone", [][]byte{good.Value, nil}, 0, 0},
		{"stale then tombstone", [][]byte{stale, nil}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := e.NewScope(ScopeOptions{Topic: "audit"})
			for _, v := range tc.values {
				_, _ = sc.Restore(good.Key, v) // a malformed entry's error: TestScopeRestoreStaleAndBad
			}
			tombs := 0
			for _, ch := range sc.Drain() {
				if ch.Value == nil && ch.Reason == ReasonStale {
					tombs++
				}
			}
			if g := sc.Groups(); g != tc.wantGroups || tombs != tc.wantTombs {
				t.Errorf("%d groups and %d stale tombstones, want %d and %d", g, tombs, tc.wantGroups, tc.wantTombs)
			}
		})
	}
}

// FuzzScopeRestore: no changelog entry, however malformed, panics the
// restore or the evaluation after it.
func FuzzScopeRestore(f *testing.F) {
	dir := writeRules(f, durableRules)
	e, err := New(LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
	if err != nil {
		f.Fatal(err)
	}
	sc := e.NewScope(ScopeOptions{Topic: "audit"})
	for i, r := range durableRecords(f, 60) {
		e.EvalIn(r, sc, int64(i))
		for _, ch := range sc.Drain() {
			if ch.Value != nil {
				f.Add(ch.Key, ch.Value)
			}
		}
	}
	after := durableRecords(f, 80)[60:]
	f.Fuzz(func(t *testing.T, key, value []byte) {
		sc := e.NewScope(ScopeOptions{Topic: "audit", MaxBytes: 4096})
		if _, err := sc.Restore(key, value); err != nil && !errors.Is(err, ErrStateValue) {
			t.Fatalf("error not wrapping ErrStateValue: %v", err)
		}
		for i, r := range after {
			e.EvalIn(r, sc, int64(60+i))
			sc.Drain()
		}
	})
}
