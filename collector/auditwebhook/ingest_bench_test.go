package auditwebhook

import (
	"context"
	"testing"
)

// BenchmarkIngestGarbage measures a body of 100,000 garbage items ({} and 1),
// each a dead letter, beside a body of as many valid events (the baseline),
// through decode, redaction and an in-memory publisher.
func BenchmarkIngestGarbage(b *testing.B) {
	const n = 100_000
	garbage := make([]string, n)
	valid := make([]string, n)
	for i := range garbage {
		garbage[i] = []string{"{}", "1"}[i%2]
		valid[i] = event("v")
	}
	for _, bc := range []struct{ name, body string }{
		{"garbage", eventList(garbage...)},
		{"baseline-valid", eventList(valid...)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := start(b)
			body := []byte(bc.body)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				e.pub.mu.Lock()
				e.pub.recs, e.pub.dls = nil, nil
				e.pub.mu.Unlock()
				if _, err := e.rcv.ingest(context.Background(), body, "bench"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/body")
		})
	}
}
