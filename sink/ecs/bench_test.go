package ecs

import (
	"bytes"
	"io"
	"testing"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// BenchmarkRecord builds the documents of rules/testdata/bench-audit.log.gz
// (real audit records, a quarter with request/response bodies) and reports
// documents per second of one core: the builder's share of the processor's
// CPU next to Elasticsearch's.
//
//	go test -run '^$' -bench Record -benchtime 3x ./sink/ecs/
func BenchmarkRecord(b *testing.B) {
	d := record.NewDecoder(bytes.NewReader(testenv.BenchAuditLog(b)), "bench", record.DecodeOptions{Cluster: record.Cluster{Name: "c"}})
	var recs []*record.Record
	for {
		r, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		recs = append(recs, r)
	}
	bl := testBuilder(b)
	bl.maxBody = 256 << 10
	var bytes int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, r := range recs {
			doc, err := bl.Record(r)
			if err != nil {
				b.Fatal(err)
			}
			bytes += int64(len(doc.Body))
		}
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "docs/s")
	b.ReportMetric(float64(bytes)/float64(b.N*len(recs)), "bytes/doc")
}
