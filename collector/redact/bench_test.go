package redact

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// benchInputs: the audit log recorded from the real test kube-apiserver (a
// realistic mix, most records without sensitive bodies) and a log of only
// Secret and ConfigMap writes (the worst case for redaction).
func benchInputs(b *testing.B) map[string][]byte {
	sample, err := os.ReadFile(filepath.Join(testenv.Root(), "cmd", "kubesift", "sample", "audit.log"))
	if err != nil {
		b.Fatal(err)
	}
	var sens strings.Builder
	for range 20 {
		sens.WriteString(auditLine("create", "/api/v1/namespaces/ns1/secrets", "secrets", "", secretObj, secretObj) + "\n")
		sens.WriteString(auditLine("update", "/api/v1/namespaces/ns1/configmaps/cfg", "configmaps", "", cmObj, cmObj) + "\n")
	}
	var work strings.Builder
	for range 20 {
		work.WriteString(auditLine("create", "/api/v1/namespaces/ns1/pods", "pods", "", podWithCreds, podWithCreds) + "\n")
		work.WriteString(auditLine("update", "/apis/apps/v1/namespaces/ns1/deployments/d", "deployments", "", deploymentWithCreds, deploymentWithCreds) + "\n")
		work.WriteString(auditLine("create", "/apis/networking.k8s.io/v1/namespaces/ns1/ingresses", "ingresses", "", ingressObj, ingressObj) + "\n")
		work.WriteString(auditLine("create", "/api/v1/namespaces/ns1/configmaps", "configmaps", "", cmFiles, cmFiles) + "\n")
	}
	return map[string][]byte{"sample-mix": sample, "secrets-configmaps": []byte(sens.String()), "workloads-with-credentials": []byte(work.String())}
}

// rulesets are the two configurations every benchmark runs side by side:
// the secret-bearing kinds only (the baseline) and every rule.
var rulesets = []struct {
	name            string
	secretKindsOnly bool
}{{"secret-kinds-only", true}, {"all-rules", false}}

// BenchmarkDecodeApply measures decode + redaction + size policy per record
// (ns/record is the figure to read).
func BenchmarkDecodeApply(b *testing.B) {
	for name, in := range benchInputs(b) {
		for _, rs := range rulesets {
			b.Run(name+"/"+rs.name, func(b *testing.B) {
				s := newSanitizer(b, nil)
				s.secretKindsOnly = rs.secretKindsOnly
				n := bytes.Count(in, []byte{'\n'})
				b.SetBytes(int64(len(in)))
				b.ReportAllocs()
				for b.Loop() {
					recs, errs := record.DecodeAll(in, "bench", record.DecodeOptions{})
					if len(errs) > 0 {
						b.Fatal(errs[0])
					}
					for _, r := range recs {
						if err := s.Apply(r); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
			})
		}
	}
}

// BenchmarkApplyOnly isolates the redaction step from decoding.
func BenchmarkApplyOnly(b *testing.B) {
	for name, in := range benchInputs(b) {
		for _, rs := range rulesets {
			b.Run(name+"/"+rs.name, func(b *testing.B) {
				s := newSanitizer(b, nil)
				s.secretKindsOnly = rs.secretKindsOnly
				b.ReportAllocs()
				var n int
				for b.Loop() {
					b.StopTimer()
					recs, _ := record.DecodeAll(in, "bench", record.DecodeOptions{})
					n += len(recs)
					b.StartTimer()
					for _, r := range recs {
						if err := s.Apply(r); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/record")
			})
		}
	}
}
