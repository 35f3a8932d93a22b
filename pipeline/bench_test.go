package pipeline

import (
	"context"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/pipeline/pipelinetest"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
)

// discardWriter finishes every document at once, so the benchmark measures
// the processor's own work per message.
type discardWriter struct{}

func (discardWriter) Add(_ context.Context, _ sink.Doc, done func(sink.Result)) error {
	done(sink.Result{Status: sink.Indexed})
	return nil
}
func (discardWriter) Close(context.Context) error { return nil }

// BenchmarkHandle is the CPU cost of one message in the processor — decode,
// the built-in rules, the ECS documents, the per-message bookkeeping —
// with a Writer that costs nothing, on the generator's ~1.6 KB records (2%
// of which alert; their Kafka production is left out: no broker).
func BenchmarkHandle(b *testing.B) {
	eng, err := rules.New(rules.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	docs, err := ecs.New(config.Default().Sink.Elasticsearch)
	if err != nil {
		b.Fatal(err)
	}
	const n = 4096
	msgs := make([]kafka.Message, n)
	var bytes int64
	for i := range msgs {
		// No privileged records: alerts would need a broker.
		r := pipelinetest.Audit("bench", i*pipelinetest.PrivilegedEvery)
		v, err := record.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = kafka.Message{Topic: "t", Offset: int64(i), Value: v}
		bytes += int64(len(v))
	}
	p := &Processor{o: Options{Rules: eng, Documents: docs, Writer: discardWriter{}}, m: newMetrics()}
	b.SetBytes(bytes / n)
	b.ReportAllocs()
	b.ResetTimer()
	part := &partition{topic: "t", tracker: NewTracker(0), win: newWindow(1<<20, 1<<40, nil)}
	for i := 0; i < b.N; i++ {
		m := msgs[i%n]
		m.Offset = int64(i)
		p.handle(context.Background(), context.Background(), part, m)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
