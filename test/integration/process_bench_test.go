package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esutil"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/pipeline/pipelinetest"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// BenchmarkProcessVsBulkIndexer measures, in one run against the real
// Elasticsearch, the same documents written two ways:
//
//   - loader: a bare esutil.BulkIndexer (same workers, flush bytes and flush
//     interval as the processor's writer) fed pre-built documents — the
//     rate Elasticsearch itself allows;
//   - processor: the real `kubesift process` binary consuming the records
//     from the real Kafka (produced beforehand, not timed), decoding them,
//     evaluating the built-in rules, building the documents and writing
//     them, timed from joining the group until every document is indexed.
//
// It reports both rates in documents/s (records + alerts) as the median of
// KUBESIFT_BENCH_ROUNDS rounds (default 3, alternating which side goes
// first) and their ratio (target >= 0.9). Records per run:
// KUBESIFT_BENCH_RECORDS (default 50,000). Run:
//
//	go test -run '^$' -bench ProcessVsBulkIndexer -benchtime 1x ./test/integration/
func BenchmarkProcessVsBulkIndexer(b *testing.B) {
	testenv.Short(b)
	brokers := testenv.KafkaBrokers(b)
	esURL := testenv.ElasticsearchURL(b)
	n := 50000
	if v := os.Getenv("KUBESIFT_BENCH_RECORDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("KUBESIFT_BENCH_RECORDS=%q: not a positive number", v)
		}
	}
	rounds := 3
	if v := os.Getenv("KUBESIFT_BENCH_ROUNDS"); v != "" {
		var err error
		if rounds, err = strconv.Atoi(v); err != nil || rounds <= 0 {
			b.Fatalf("KUBESIFT_BENCH_ROUNDS=%q: not a positive number", v)
		}
	}
	// Build the binary first: the build's disk writeback would otherwise
	// slow Elasticsearch's translog fsyncs during the first round.
	testenv.Kubesift(b)
	time.Sleep(5 * time.Second) // time for that writeback, which nothing here reports
	for range b.N {
		// Several rounds, alternating which side goes first, and the median
		// of each side: the test machine is shared (other tests, other
		// builds), and a single pair of runs swings with its load.
		var loader, writer, proc []float64
		for r := range rounds {
			var lr, wr, pr float64
			var ln, wn, pn string
			if r%2 == 0 {
				lr, ln = benchLoader(b, brokers, esURL, n)
				wr, wn = benchESWriter(b, brokers, esURL, n)
				pr, pn = benchProcessor(b, brokers, esURL, n)
			} else {
				pr, pn = benchProcessor(b, brokers, esURL, n)
				wr, wn = benchESWriter(b, brokers, esURL, n)
				lr, ln = benchLoader(b, brokers, esURL, n)
			}
			loader, writer, proc = append(loader, lr), append(writer, wr), append(proc, pr)
			b.Logf("round %d: bare BulkIndexer %.0f docs/s (%s); sink/elasticsearch.Writer alone %.0f docs/s (%s); processor %.0f docs/s (%s)",
				r+1, lr, ln, wr, wn, pr, pn)
		}
		l, w, p := median(loader), median(writer), median(proc)
		b.ReportMetric(l, "loader_docs/s")
		b.ReportMetric(w, "writer_docs/s")
		b.ReportMetric(p, "processor_docs/s")
		b.ReportMetric(p/l, "ratio")
		b.Logf("%d records x %d rounds: median bare BulkIndexer %.0f docs/s, writer alone %.0f docs/s, processor %.0f docs/s, ratio processor/loader %.2f",
			n, rounds, l, w, p, p/l)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// benchESConfig is the Elasticsearch configuration both sides use.
func benchESConfig(e *procEnv) config.ElasticsearchConfig {
	c := config.Default().Sink.Elasticsearch
	c.Addresses = []string{e.esURL}
	c.Streams = config.ESStreamsConfig{Audit: e.stream, Events: "logs-kubesift.events-" + e.run, Posture: "logs-kubesift.posture-" + e.run}
	c.AlertsIndex = e.alertsIdx
	c.FlushInterval = 250 * time.Millisecond // as procEnv.config writes for the processor
	return c
}

func benchLoader(b *testing.B, brokers []string, esURL string, n int) (float64, string) {
	return benchDirect(b, brokers, esURL, n, false)
}

// benchESWriter feeds the same pre-built documents to the processor's own
// Elasticsearch writer (sink/elasticsearch.Writer), without Kafka, decoding
// or rules: it tells whether a gap between the loader and the processor is
// in the writer or in the rest of the processor.
func benchESWriter(b *testing.B, brokers []string, esURL string, n int) (float64, string) {
	return benchDirect(b, brokers, esURL, n, true)
}

func benchDirect(b *testing.B, brokers []string, esURL string, n int, useWriter bool) (float64, string) {
	b.Helper()
	e := newProcEnv(b, "bload", brokers, esURL, 1)
	cfg := benchESConfig(e)
	es, err := elasticsearch.NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := elasticsearch.Setup(ctx, es, cfg, nil); err != nil {
		b.Fatal(err)
	}
	// The same documents the processor writes: records decoded from their
	// wire form, their alerts from the built-in rules, built by sink/ecs.
	builder, err := ecs.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	eng, err := rules.New(rules.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var docs []sink.Doc
	for i := range n {
		wire, err := record.Marshal(pipelinetest.Audit(e.run, i))
		if err != nil {
			b.Fatal(err)
		}
		r, err := record.Unmarshal(wire)
		if err != nil {
			b.Fatal(err)
		}
		d, err := builder.Record(r)
		if err != nil {
			b.Fatal(err)
		}
		docs = append(docs, d)
		for _, a := range eng.Eval(r) {
			ad, err := builder.Alert(&a)
			if err != nil {
				b.Fatal(err)
			}
			docs = append(docs, ad)
		}
	}
	if useWriter {
		reg := prometheus.NewRegistry()
		w, err := elasticsearch.NewWriter(elasticsearch.WriterOptions{Client: es, Config: cfg, Registerer: reg})
		if err != nil {
			b.Fatal(err)
		}
		var done, bad atomic.Int64
		esCPU0 := esCPUSeconds()
		start := time.Now()
		for _, d := range docs {
			if err := w.Add(ctx, d, func(r sink.Result) {
				if r.Status != sink.Indexed {
					bad.Add(1)
				}
				done.Add(1)
			}); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(ctx); err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		note := fmt.Sprintf("ES %.2f cores; %.0f docs/bulk", (esCPUSeconds()-esCPU0)/elapsed.Seconds(),
			float64(len(docs))/max(testenv.Metric(b, reg, "kubesift_sink_es_bulk_requests_total", "result", "ok"), 1))
		if bad.Load() != 0 || int(done.Load()) != len(docs) {
			b.Fatalf("writer: %d done, %d not indexed, of %d", done.Load(), bad.Load(), len(docs))
		}
		return float64(len(docs)) / elapsed.Seconds(), note
	}
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
		Client: es, NumWorkers: cfg.Workers, FlushBytes: cfg.FlushBytes, FlushInterval: cfg.FlushInterval,
	})
	if err != nil {
		b.Fatal(err)
	}
	var failed atomic.Int64
	esCPU0 := esCPUSeconds()
	start := time.Now()
	for _, d := range docs {
		err := bi.Add(ctx, esutil.BulkIndexerItem{
			Action: "create", Index: d.Index, DocumentID: d.ID, Body: bytes.NewReader(d.Body),
			OnFailure: func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem, error) {
				failed.Add(1)
			},
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := bi.Close(ctx); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	st := bi.Stats()
	note := fmt.Sprintf("ES %.2f cores; %.0f docs/bulk", (esCPUSeconds()-esCPU0)/elapsed.Seconds(),
		float64(st.NumAdded)/float64(max(st.NumRequests, 1)))
	if failed.Load() != 0 || int(st.NumCreated) != len(docs) {
		b.Fatalf("loader: %d created, %d failed of %d", st.NumCreated, failed.Load(), len(docs))
	}
	return float64(len(docs)) / elapsed.Seconds(), note
}

func benchProcessor(b *testing.B, brokers []string, esURL string, n int) (float64, string) {
	b.Helper()
	e := newProcEnv(b, "bproc", brokers, esURL, procPartitions)
	cfg := benchESConfig(e)
	es, err := elasticsearch.NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	// Templates and streams first, untimed, as for the loader.
	if err := elasticsearch.Setup(context.Background(), es, cfg, nil); err != nil {
		b.Fatal(err)
	}
	e.produce(0, n)
	want := float64(n + pipelinetest.Alerting(n))
	addr := testenv.FreeAddr(b)
	// KUBESIFT_BENCH_PROCESSOR_EXTRA is YAML appended under processor:
	// (two-space indented), for tuning runs, e.g. a larger
	// max_in_flight_messages; both sides are otherwise configured alike.
	p := testenv.Start(b, "proc-bench", nil, "process", "-c", e.config("proc-bench", addr, os.Getenv("KUBESIFT_BENCH_PROCESSOR_EXTRA")))
	// The clock starts at the first message consumed — as the loader's at
	// its first Add — so start-up and the group join are not counted.
	var start time.Time
	var cpu0, esCPU0 float64
	deadline := time.Now().Add(10 * time.Minute)
	for {
		if p.Exited() {
			b.Fatalf("processor exited:\n%s", testenv.Tail(p.LogPath, 30))
		}
		if time.Now().After(deadline) {
			b.Fatal("processor did not finish within 10 minutes")
		}
		if start.IsZero() {
			if procMetric(addr, "kubesift_processor_consumed_total") > 0 {
				start = time.Now()
				cpu0, esCPU0 = cpuSeconds(p.Pid()), esCPUSeconds()
			}
			time.Sleep(5 * time.Millisecond) // the start's resolution
			continue
		}
		got := procMetric(addr, "kubesift_processor_indexed_total")
		if got == want {
			break
		}
		if got > want {
			b.Fatalf("processor indexed %v documents, want %v", got, want)
		}
		// A fixed, short poll: its period bounds the error of the
		// measured time, which WaitFor's back-off would widen.
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	// Both share the machine's cores: what the processor burns (decode,
	// rules, documents, Kafka fetches) is CPU Elasticsearch does not get.
	// The shape of its bulk requests (as large as the loader's?) and whether
	// its writer ever waited for queue space: if it did, Elasticsearch was
	// the limit at that moment; if never, the processor was.
	bulks := procMetric(addr, "kubesift_sink_es_bulk_requests_total", `result="ok"`)
	note := fmt.Sprintf("kubesift %.2f + ES %.2f cores; %.0f docs/bulk; writer blocked %.0f times",
		(cpuSeconds(p.Pid())-cpu0)/elapsed.Seconds(), (esCPUSeconds()-esCPU0)/elapsed.Seconds(),
		want/max(bulks, 1), procMetric(addr, "kubesift_sink_es_add_blocked_total"))
	p.Kill()
	return want / elapsed.Seconds(), note
}

// cpuSeconds is the user+system CPU time of process pid so far (0 when it
// cannot be read).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name: state is field 3,
	// utime and stime are fields 14 and 15, in clock ticks (USER_HZ, 100).
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100
}

// esCPUSeconds is cpuSeconds of the test ground's Elasticsearch.
func esCPUSeconds() float64 {
	b, err := os.ReadFile(filepath.Join(testenv.Dir(), "es", "es.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return cpuSeconds(pid)
}
