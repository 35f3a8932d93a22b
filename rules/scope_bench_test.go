package rules

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/kubesift/kubesift/record"
)

// BenchmarkRulesScoped is BenchmarkRules with the stateful rules' memory in
// a Scope, as the processor runs with processor.rule_state (EvalIn, then
// Drain to take the changes), beside the engine's shared memory (Eval) in
// the same run: the built-in pack is mostly stateless, and stateless rules
// must not pay for durable state.
func BenchmarkRulesScoped(b *testing.B) {
	lines := corpora(b)["all"]
	recs := make([]*record.Record, len(lines))
	for i, l := range lines {
		recs[i] = decodeLine(b, l)
	}
	for _, mode := range []string{"shared", "scope"} {
		b.Run(mode, func(b *testing.B) {
			e, err := New(LoadOptions{})
			if err != nil {
				b.Fatal(err)
			}
			sc := e.NewScope(ScopeOptions{Topic: "audit", MaxBytes: 8 << 20})
			changes := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r := recs[i%len(recs)]
				if mode == "shared" {
					e.Eval(r)
					continue
				}
				e.EvalIn(r, sc, int64(i))
				changes += len(sc.Drain())
			}
			reportRate(b)
			b.ReportMetric(float64(changes)/float64(b.N), "changes/event")
		})
	}
}

// BenchmarkScopeRestore applies scopeRestoreKeys changelog entries of a
// new_term rule to an empty Scope, the in-process part of restoring one
// partition (no Kafka), beside copying the same entries into a plain map
// (the baseline, in the same run).
func BenchmarkScopeRestore(b *testing.B) {
	const scopeRestoreKeys = 1_000_000
	exec := `,"objectRef":{"resource":"pods","namespace":"ns","name":"p","subresource":"exec"}`
	e, err := New(LoadOptions{NoBuiltin: true, Dirs: []string{writeRules(b, durableRules)}, MaxGroups: 2 * scopeRestoreKeys})
	if err != nil {
		b.Fatal(err)
	}
	// One real entry made by the engine, its group key replaced by each
	// user in turn.
	const user0 = "user-0000000@example.com"
	sc := e.NewScope(ScopeOptions{Topic: "audit"})
	e.EvalIn(auditRec(b, 0, t0, "create", "pods", "ns", "p", user0, exec), sc, 0)
	var tmpl StateChange
	for _, c := range sc.Drain() {
		if c.Reason == ReasonUpdate {
			tmpl = c
		}
	}
	prefix, ok := bytes.CutSuffix(tmpl.Key, []byte(user0))
	if !ok {
		b.Fatalf("changelog key %q does not end with the group key %q", tmpl.Key, user0)
	}
	keys := make([][]byte, scopeRestoreKeys)
	for i := range keys {
		keys[i] = fmt.Appendf(bytes.Clone(prefix), "user-%07d@example.com", i)
	}
	b.Run("map", func(b *testing.B) {
		for range b.N {
			m := make(map[string][]byte)
			for _, k := range keys {
				m[string(k)] = bytes.Clone(tmpl.Value)
			}
			if len(m) != scopeRestoreKeys {
				b.Fatalf("%d entries, want %d", len(m), scopeRestoreKeys)
			}
		}
		b.ReportMetric(float64(scopeRestoreKeys)*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
	})
	b.Run("scope", func(b *testing.B) {
		for range b.N {
			sc := e.NewScope(ScopeOptions{Topic: "audit", MaxBytes: 1 << 30})
			for _, k := range keys {
				if _, err := sc.Restore(k, tmpl.Value); err != nil {
					b.Fatal(err)
				}
			}
			if g := sc.Groups(); g != scopeRestoreKeys {
				b.Fatalf("restored %d groups, want %d", g, scopeRestoreKeys)
			}
		}
		b.ReportMetric(float64(scopeRestoreKeys)*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
	})
}
