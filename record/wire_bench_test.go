package record

import (
	"encoding/json"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kubesift/kubesift/internal/testenv"
)

// wireCorpus is the bench corpus recorded from the real kube-apiserver
// (rules/testdata, see hack/record-bench-corpus.sh) as the processor reads
// it from Kafka: each audit event Marshalled into its envelope.
func wireCorpus(b testing.TB) (msgs [][]byte, total int64) {
	recs, errs := DecodeAll(testenv.BenchAuditLog(b), "bench", testOpts)
	if len(errs) > 0 {
		b.Fatal(errs[0])
	}
	for _, r := range recs {
		m, err := Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, m)
		total += int64(len(m))
	}
	return msgs, total
}

// BenchmarkUnmarshal is the processor's decode of one Kafka message:
// envelope and typed audit view. "encoding/json" is the baseline in the
// same run: the envelope through encoding/json and the typed view walked
// whole, as Unmarshal did before it read the envelope with jsoniter and
// attached large bodies as spans. One op is one record, in corpus order, so
// whole passes give the corpus's mix:
//
//	go test -run '^$' -bench Unmarshal -benchtime 3206x ./record/
func BenchmarkUnmarshal(b *testing.B) {
	msgs, total := wireCorpus(b)
	run := func(b *testing.B, decode func([]byte) error) {
		b.SetBytes(total / int64(len(msgs)))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := decode(msgs[i%len(msgs)]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	}
	b.Run("kubesift", func(b *testing.B) {
		run(b, func(m []byte) error { _, err := Unmarshal(m); return err })
	})
	b.Run("encoding/json", func(b *testing.B) {
		run(b, func(m []byte) error {
			var r Record
			if err := json.Unmarshal(m, &r); err != nil {
				return err
			}
			r.Audit = new(auditv1.Event)
			return unmarshalTyped(r.Object, r.Audit)
		})
	})
}
