package publish

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/kubesift/kubesift/record"
)

// benchAuditLines returns n audit log lines of ~1.5 KB (a Metadata-level
// pod read, like test/integration's BenchmarkTailToKafka).
func benchAuditLines(n int) []byte {
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"b0000000-0000-4000-8000-%012d",`+
			`"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/team-%02d/pods/web-7d9f8c6b5-x2x4z","verb":"get",`+
			`"user":{"username":"system:serviceaccount:team-%02d:deployer-%03d","uid":"5e1f1c9a-2b8d-4f0e-9a77-%012d",`+
			`"groups":["system:serviceaccounts","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=0f4e2d1c-9b8a-4c7d-8e6f-5a4b3c2d1e0f"],`+
			`"authentication.kubernetes.io/node-name":["ip-10-0-1-2.eu-west-1.compute.internal"],"authentication.kubernetes.io/pod-name":["deployer-5c8d7f9b6-abcde"]}},`+
			`"sourceIPs":["10.0.1.2"],"userAgent":"kubectl/v1.37.2 (linux/amd64) kubernetes/6a2e1f0",`+
			`"objectRef":{"resource":"pods","namespace":"team-%02d","name":"web-7d9f8c6b5-x2x4z","apiVersion":"v1"},`+
			`"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-01T10:00:00.000001Z",`+
			`"stageTimestamp":"2026-12-01T10:00:00.003457Z","annotations":{"authorization.k8s.io/decision":"allow",`+
			`"authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"deployers/team\" of Role \"deployer\" to ServiceAccount \"deployer\"",`+
			`"pod-security.kubernetes.io/enforce-policy":"restricted:latest","apiserver.latency.k8s.io/etcd":"1.234567ms",`+
			`"apiserver.latency.k8s.io/serialize-response-object":"456.789µs","apiserver.latency.k8s.io/total":"3.456789ms"}}`+"\n",
			i, i%20, i%20, i%200, i, i%20)
	}
	return []byte(sb.String())
}

// BenchmarkInFlightRecord measures what one audit record of a batch in
// flight keeps on the heap once it is encoded for Kafka — the record the
// tail keeps to publish again if the batch fails, plus its message. It
// compares what the code does (typed view dropped after redaction,
// collector.Pipeliner; Object shared with the message, shareObject) with a
// baseline that keeps the typed view and gives the message a copy of the
// object of its own, the cost those two choices avoid.
// retained-B/record is the figure to read; the baseline's ns/op includes
// the copy that stands in for an unshared Object, so it is no CPU baseline.
func BenchmarkInFlightRecord(b *testing.B) {
	const n = 1000
	data := benchAuditLines(n)
	for _, mode := range []string{"baseline=view+copy", "lean+shared"} {
		b.Run(mode, func(b *testing.B) {
			var retained float64
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				runtime.GC()
				var ms0, ms1 runtime.MemStats
				runtime.ReadMemStats(&ms0)
				recs, errs := record.DecodeAll(data, "bench", record.DecodeOptions{})
				if len(errs) > 0 || len(recs) != n {
					b.Fatalf("%d records, errors %v", len(recs), errs)
				}
				b.StartTimer()
				msgs := make([]outMsg, n)
				for i, r := range recs {
					if mode != "baseline=view+copy" {
						r.Audit = nil
					}
					m, err := fromRecord(r, []byte("audit-tail"))
					if err != nil {
						b.Fatal(err)
					}
					if mode == "baseline=view+copy" {
						// The message gets a copy of its own instead of
						// sharing r.Object's bytes (shareObject).
						m.value = append([]byte(nil), m.value...)
					}
					msgs[i] = m
				}
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&ms1)
				// Everything the batch holds now: records and messages.
				retained += float64(int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc)) / n
				runtime.KeepAlive(recs)
				runtime.KeepAlive(msgs)
				b.StartTimer()
			}
			b.ReportMetric(retained/float64(b.N), "retained-B/record")
		})
	}
}
