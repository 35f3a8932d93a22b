package rules

import (
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
