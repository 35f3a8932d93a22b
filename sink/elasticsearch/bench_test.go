package elasticsearch

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esutil"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
)

// benchDocCount is the documents each loader writes per iteration: the
// benchmark records, repeated under fresh IDs.
const benchDocCount = 30000

// BenchmarkWriterVsBulkIndexer writes the same documents (kubesift's audit
// documents of rules/testdata/bench-audit.log.gz) into real Elasticsearch
// with a bare esutil.BulkIndexer (same workers, flush bytes and interval,
// create with _id) and with the Writer, alternating in one run, and reports
// both rates and their ratio. Skipped without the test ground.
//
//	go test -run '^$' -bench WriterVsBulkIndexer -benchtime 2x ./sink/elasticsearch/
func BenchmarkWriterVsBulkIndexer(b *testing.B) {
	es, cfg := realES(b)
	if err := Setup(context.Background(), es, cfg, nil); err != nil {
		b.Fatal(err)
	}
	builder, err := ecs.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	base := buildDocs(b, builder, benchRecords(b))
	docs := func(prefix string) []sink.Doc {
		out := make([]sink.Doc, benchDocCount)
		for i := range out {
			d := base[i%len(base)]
			d.ID = fmt.Sprintf("%s-%d-%s", prefix, i/len(base), d.ID)
			out[i] = d
		}
		return out
	}
	var bareDur, writerDur time.Duration
	var bytesPerRun int
	for _, d := range docs("x") {
		bytesPerRun += len(d.Body)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bare, ks := docs(fmt.Sprint("bare", i)), docs(fmt.Sprint("ks", i))
		// Alternate the order so neither always meets a warmer cluster.
		runs := []func(){
			func() { bareDur += timeIt(func() { bareLoad(b, es, cfg, bare) }) },
			func() { writerDur += timeIt(func() { writerLoad(b, es, cfg, ks) }) },
		}
		if i%2 == 1 {
			runs[0], runs[1] = runs[1], runs[0]
		}
		for _, r := range runs {
			r()
		}
	}
	b.StopTimer()
	n := float64(b.N * benchDocCount)
	bareRate, writerRate := n/bareDur.Seconds(), n/writerDur.Seconds()
	b.ReportMetric(bareRate, "bare_docs/s")
	b.ReportMetric(writerRate, "writer_docs/s")
	b.ReportMetric(writerRate/bareRate, "writer/bare")
	b.Logf("%d docs x %d (%.1f MB each run): bare BulkIndexer %.0f docs/s, Writer %.0f docs/s, ratio %.2f",
		benchDocCount, b.N, float64(bytesPerRun)/1e6, bareRate, writerRate, writerRate/bareRate)
	if got, want := count(b, es, cfg.Streams.Audit), 2*b.N*benchDocCount; got != want {
		b.Errorf("_count = %d, want %d", got, want)
	}
}

func timeIt(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// bareLoad is the baseline: esutil.BulkIndexer as a loader would use it.
func bareLoad(b *testing.B, es *Client, cfg config.ElasticsearchConfig, docs []sink.Doc) {
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
		Client: es, NumWorkers: cfg.Workers, FlushBytes: cfg.FlushBytes, FlushInterval: cfg.FlushInterval,
	})
	if err != nil {
		b.Fatal(err)
	}
	var failed atomic.Int64
	ctx := context.Background()
	for _, d := range docs {
		if err := bi.Add(ctx, esutil.BulkIndexerItem{
			Action: "create", Index: d.Index, DocumentID: d.ID, Body: bytes.NewReader(d.Body),
			OnFailure: func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem, error) { failed.Add(1) },
		}); err != nil {
			b.Fatal(err)
		}
	}
	if err := bi.Close(ctx); err != nil {
		b.Fatal(err)
	}
	if n := failed.Load(); n > 0 {
		b.Fatalf("bare loader: %d failures", n)
	}
}

func writerLoad(b *testing.B, es *Client, cfg config.ElasticsearchConfig, docs []sink.Doc) {
	w, err := NewWriter(WriterOptions{Client: es, Config: cfg})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var bad atomic.Int64
	ctx := context.Background()
	for _, d := range docs {
		wg.Add(1)
		if err := w.Add(ctx, d, func(r sink.Result) {
			if r.Status != sink.Indexed {
				bad.Add(1)
			}
			wg.Done()
		}); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		b.Fatal(err)
	}
	wg.Wait()
	if n := bad.Load(); n > 0 {
		b.Fatalf("writer: %d documents not indexed", n)
	}
}
