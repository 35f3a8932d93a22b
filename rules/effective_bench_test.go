package rules

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kubesift/kubesift/record"
)

// BenchmarkEffective is the cost of the effective object per record: the
// same two rules read request (the baseline, in the same run) or effective,
// over the recorded corpus (every record) and over its writes alone (the
// records a workload or RBAC rule is a candidate for, where effective is
// worked out). The built-in pack's figure is BenchmarkRules.
func BenchmarkEffective(b *testing.B) {
	for _, obj := range []string{"request", "effective"} {
		rules := `
rules:
  - {id: priv, title: t, severity: high, source: audit, condition: 'verb in ["create", "update", "patch"] && resource in ["pods", "deployments", "daemonsets", "statefulsets", "replicasets", "jobs", "cronjobs"] && privileged(` + obj + `)'}
  - {id: wild, title: t, severity: high, source: audit, condition: 'verb in ["create", "update", "patch"] && resource in ["roles", "clusterroles"] && "*" in rbac_verbs(` + obj + `)'}
`
		for _, part := range []string{"all", "writes"} {
			b.Run(obj+"/"+part, func(b *testing.B) {
				b.StopTimer()
				var recs []*record.Record
				for _, l := range benchCorpus(b) {
					r := decodeLine(b, l)
					if r == nil || r.Audit == nil {
						continue
					}
					if v := r.Audit.Verb; part == "all" || v == "create" || v == "update" || v == "patch" {
						recs = append(recs, r)
					}
				}
				dir := b.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(rules), 0o644); err != nil {
					b.Fatal(err)
				}
				e, err := New(LoadOptions{NoBuiltin: true, Dirs: []string{dir}})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ReportMetric(float64(len(recs)), "records")
				b.StartTimer()
				for i := 0; i < b.N; i++ {
					e.Eval(recs[i%len(recs)])
				}
				reportRate(b)
			})
		}
	}
}
