package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/collector/audittail"
	"github.com/kubesift/kubesift/collector/publish"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// benchLine returns audit event n as one log line of about 1.5 KB: a
// Metadata-level pod read with the fields kube-apiserver fills in, spread
// over 200 users and 20 namespaces.
func benchLine(n int) string {
	user, ns := n%200, n%20
	return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"b0000000-0000-4000-8000-%012d",`+
		`"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/team-%02d/pods/web-%d-7d9f8c6b5-x2x4z","verb":"get",`+
		`"user":{"username":"system:serviceaccount:team-%02d:deployer-%03d","uid":"5e1f1c9a-2b8d-4f0e-9a77-%012d",`+
		`"groups":["system:serviceaccounts","system:serviceaccounts:team-%02d","system:authenticated"],`+
		`"extra":{"authentication.kubernetes.io/credential-id":["JTI=0f4e2d1c-9b8a-4c7d-8e6f-5a4b3c2d1e0f"],`+
		`"authentication.kubernetes.io/node-name":["ip-10-0-%d-%d.eu-west-1.compute.internal"],`+
		`"authentication.kubernetes.io/pod-name":["deployer-%03d-5c8d7f9b6-abcde"],"authentication.kubernetes.io/pod-uid":["a1b2c3d4-e5f6-4a7b-8c9d-%012d"]}},`+
		`"sourceIPs":["10.0.%d.%d"],"userAgent":"kubectl/v1.37.2 (linux/amd64) kubernetes/6a2e1f0",`+
		`"objectRef":{"resource":"pods","namespace":"team-%02d","name":"web-%d-7d9f8c6b5-x2x4z","apiVersion":"v1"},`+
		`"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-01T10:%02d:%02d.%06dZ",`+
		`"stageTimestamp":"2026-12-01T10:%02d:%02d.%06dZ","annotations":{"authorization.k8s.io/decision":"allow",`+
		`"authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"deployers/team-%02d\" of Role \"deployer\" to ServiceAccount \"deployer-%03d/team-%02d\"",`+
		`"pod-security.kubernetes.io/enforce-policy":"restricted:latest","apiserver.latency.k8s.io/etcd":"1.234567ms",`+
		`"apiserver.latency.k8s.io/serialize-response-object":"456.789µs","apiserver.latency.k8s.io/total":"3.456789ms"}}`,
		n, ns, n%50, ns, user, n, ns, n%250, n%200, user, n, n%250, n%199, ns, n%50,
		(n/60000)%60, (n/1000)%60, n%1000000, (n/60000)%60, (n/1000)%60, (n+3456)%1000000, ns, user, ns)
}

// BenchmarkTailToKafka measures file tail → Kafka through the real
// `kubesift collect` binary against the real broker: b.N lines of ~1.5 KB
// audit events are written to a file first; the collector starts with
// start_at: beginning and the default publish settings (zstd, acks=all,
// 10 ms batch timeout); the time runs from its start until Kafka has
// acknowledged every record. It reports records/s, MB/s of log read and the
// collector's peak RSS. The baseline in the same run is kafka-go's Writer
// alone, in this test process, writing the same lines with the same
// settings from 4 goroutines: what this broker on this machine takes.
//
//	go test -run '^$' -bench BenchmarkTailToKafka -benchtime 300000x ./test/integration/
func BenchmarkTailToKafka(b *testing.B) {
	testenv.Short(b)
	brokers := testenv.KafkaBrokers(b)
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.Logf("load average before: %s", strings.TrimSpace(string(la)))
	}
	b.Run("baseline=kafka-go-writer", func(b *testing.B) { benchWriter(b, brokers) })
	b.Run("kubesift-collect", func(b *testing.B) { benchCollect(b, brokers) })
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.Logf("load average after: %s", strings.TrimSpace(string(la)))
	}
}

func benchWriter(b *testing.B, brokers []string) {
	topic := fmt.Sprintf("it-bench-writer-%d", time.Now().UnixNano())
	testenv.CreateTopics(b, brokers[0], 4, topic)
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	var acked atomic.Int64
	w := &kafka.Writer{
		Addr: kafka.TCP(brokers...), Topic: topic, Balancer: kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll,
		Compression: kafka.Zstd, BatchTimeout: 10 * time.Millisecond, BatchSize: 1000, BatchBytes: 1 << 20,
		Async: true, Transport: tr,
		Completion: func(msgs []kafka.Message, err error) {
			if err != nil {
				b.Errorf("baseline write: %v", err)
			}
			acked.Add(int64(len(msgs)))
		},
	}
	const distinct = 4096
	msgs := make([]kafka.Message, distinct)
	var size int
	for i := range msgs {
		line := benchLine(i)
		size += len(line)
		msgs[i] = kafka.Message{Key: fmt.Appendf(nil, "it/user-%d", i%200), Value: []byte(line)}
	}
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				i := next.Add(1000) - 1000
				if i >= int64(b.N) {
					return
				}
				batch := make([]kafka.Message, 0, 1000)
				for j := i; j < min(i+1000, int64(b.N)); j++ {
					batch = append(batch, msgs[j%distinct])
				}
				if err := w.WriteMessages(context.Background(), batch...); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	w.Close() // flushes and waits for every completion
	el := time.Since(start)
	b.StopTimer()
	if acked.Load() != int64(b.N) {
		b.Fatalf("%d of %d acknowledged", acked.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
	b.ReportMetric(float64(size)/distinct*float64(b.N)/el.Seconds()/1e6, "MB/s")
}

// writeBenchLog writes b.N distinct audit lines (benchLine) to a new audit
// log and returns its path and size in bytes.
func writeBenchLog(b *testing.B) (string, int64) {
	b.Helper()
	logPath := filepath.Join(b.TempDir(), "audit.log")
	f, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var size int64
	for i := range b.N {
		n, _ := w.WriteString(benchLine(i))
		w.WriteByte('\n')
		size += int64(n + 1)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return logPath, size
}

func benchCollect(b *testing.B, brokers []string) {
	logPath, size := writeBenchLog(b)
	e := newCollectEnv(b, "bench", brokers, testenv.Kube{}, colOpts{tailPaths: []string{logPath}, startAt: "beginning",
		tailExtra: os.Getenv("KUBESIFT_BENCH_TAIL_YAML")})

	b.ResetTimer()
	start := time.Now()
	p := e.start("collect-bench")
	done := func() bool {
		return e.metric("kubesift_collector_publish_acked_records_total")+e.metric("kubesift_collector_spool_drained_records_total") >= float64(b.N) &&
			e.metric("kubesift_collector_tail_lag_bytes") == 0
	}
	deadline := time.Now().Add(30 * time.Minute)
	for !done() {
		if time.Now().After(deadline) || p.Exited() {
			b.Fatalf("collector did not publish %d records (acked %v)", b.N, e.metric("kubesift_collector_publish_acked_records_total"))
		}
		// A fixed, short poll: its period bounds the error of the
		// measured time, which WaitFor's back-off would widen.
		time.Sleep(20 * time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	spooled := e.metric("kubesift_collector_spooled_records_total")
	rss := p.PeakRSSKiB()
	cpu := procCPUSeconds(p.Pid())
	if err := p.Stop(time.Minute); err != nil {
		b.Errorf("SIGTERM: %v", err)
	}
	if os.Getenv("KUBESIFT_BENCH_LOG") != "" { // e.g. with GODEBUG=gctrace=1
		b.Logf("collector log:\n%s", testenv.Tail(p.LogPath, 60))
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
	b.ReportMetric(float64(size)/el.Seconds()/1e6, "MB/s")
	b.ReportMetric(float64(size)/float64(b.N), "B/line")
	b.ReportMetric(float64(rss)/1024, "peak-RSS-MiB")
	b.ReportMetric(spooled, "spooled")
	// CPU the collector used per second of the run: near 2 means it was
	// CPU-bound on this 2-core machine (which the broker shares).
	b.ReportMetric(cpu/el.Seconds(), "collector-cores")
}

// procCPUSeconds is the user+system CPU time of process pid (from
// /proc/pid/stat), or 0.
func procCPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which is in parentheses): utime and
	// stime are the 12th and 13th, in clock ticks (100 per second).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	var ut, st float64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return (ut + st) / 100
}

// BenchmarkInProcessTailToKafka runs the same path as BenchmarkTailToKafka
// (audit tail with the default config → redaction and size policy →
// publish.Publisher → the real broker) inside the test process, so that
// -cpuprofile and -memprofile see the collector's own code. With
// KUBESIFT_BENCH_HEAP=file it also writes a heap profile half-way through
// the run (the live heap at steady state, which the end-of-run memprofile
// does not show).
//
//	go test -run '^$' -bench BenchmarkInProcessTailToKafka -benchtime 300000x -cpuprofile cpu.out ./test/integration/
func BenchmarkInProcessTailToKafka(b *testing.B) {
	testenv.Short(b)
	brokers := testenv.KafkaBrokers(b)
	logPath, size := writeBenchLog(b)
	dir := b.TempDir()

	cfg := config.Default()
	topic := fmt.Sprintf("it-bench-inproc-%d", time.Now().UnixNano())
	testenv.CreateTopics(b, brokers[0], 4, topic, topic+"-dlq")
	cfg.Kafka.Brokers = brokers
	cfg.Kafka.Topics.Audit, cfg.Kafka.Topics.DLQ = topic, topic+"-dlq"
	cfg.Publish.Spool.Dir = filepath.Join(dir, "spool")
	cc := cfg.Collector
	tc := cc.AuditTail
	tc.Paths, tc.PositionsFile, tc.StartAt = []string{logPath}, filepath.Join(dir, "positions.yaml"), "beginning"
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// As `kubesift collect` does (collector.memory_limit, unless GOMEMLIMIT).
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	obs.ApplyMemoryLimit(cc.MemoryLimit, log)
	reg := prometheus.NewRegistry()
	san, err := redact.New(cc.Redaction, cc.Size, cc.DeadLetterMaxBytes, reg, log)
	if err != nil {
		b.Fatal(err)
	}
	pub, err := publish.New(publish.Options{Kafka: cfg.Kafka, Publish: cfg.Publish, Registerer: reg, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close(context.Background())
	tl, err := audittail.New(audittail.Options{Config: tc, Publisher: pub.For(audittail.Source), Sanitizer: san,
		Cluster: record.Cluster{Name: "bench"}, Registerer: reg, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	acked := func() float64 { return testenv.Metric(b, reg, "kubesift_collector_publish_acked_records_total") }
	heapFile := os.Getenv("KUBESIFT_BENCH_HEAP")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ResetTimer()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	var peak uint64
	var ms runtime.MemStats
	for acked() < float64(b.N) {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		if heapFile != "" && acked() >= float64(b.N)/2 {
			if hf, err := os.Create(heapFile); err == nil {
				pprof.WriteHeapProfile(hf)
				hf.Close()
			}
			heapFile = ""
		}
		time.Sleep(20 * time.Millisecond) // the heap's sampling period, and the measured time's resolution
	}
	el := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Error(err)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
	b.ReportMetric(float64(size)/el.Seconds()/1e6, "MB/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-inuse-MiB")
	// The mean time from Begin to Kafka's acknowledgement of a batch: with
	// the tail's three batches in flight, records/s is at most
	// 3 × batch_lines / this.
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "kubesift_collector_publish_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if h := m.GetHistogram(); h.GetSampleCount() > 0 && m.GetLabel()[0].GetValue() == "acked" {
				b.ReportMetric(h.GetSampleSum()/float64(h.GetSampleCount())*1000, "ms/batch-ack")
			}
		}
	}
}
