package audittail

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// countPub counts records and does nothing else: the tail's own cost.
type countPub struct{ n atomic.Int64 }

func (p *countPub) Publish(_ context.Context, recs []*record.Record) error {
	p.n.Add(int64(len(recs)))
	return nil
}
func (p *countPub) PublishDeadLetters(context.Context, []collector.DeadLetter) error { return nil }

// writeBenchLog writes n lines made from the audit log recorded from the
// real test kube-apiserver (cmd/kubesift/sample), each with a unique
// auditID, padded towards ~1.5 KB, the size of a typical audit event with
// a request body, so records/s and MB/s describe a realistic load.
func writeBenchLog(b *testing.B, path string, n int) int64 {
	sample, err := os.ReadFile(filepath.Join(testenv.Root(), "cmd", "kubesift", "sample", "audit.log"))
	if err != nil {
		b.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(sample), []byte("\n"))
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var size int64
	for i := range n {
		l := lines[i%len(lines)]
		// Replace the 36-character auditID value (it follows "auditID":").
		j := bytes.Index(l, []byte(`"auditID":"`)) + len(`"auditID":"`)
		var out []byte
		out = append(out, l[:j]...)
		out = fmt.Appendf(out, "%08x-0000-4000-8000-%012x", i, i)
		out = append(out, l[j+36:]...)
		if len(out) < 1500 { // pad through the userAgent, an ordinary string field
			k := bytes.Index(out, []byte(`"userAgent":"`)) + len(`"userAgent":"`)
			out = append(out[:k:k], append(bytes.Repeat([]byte("x"), 1500-len(out)), out[k:]...)...)
		}
		out = append(out, '\n')
		size += int64(len(out))
		w.Write(out)
	}
	w.Flush()
	f.Close()
	return size
}

// BenchmarkTailThroughput: tail a 200,000-line audit log from the beginning
// through decode, redaction and the size policy into a counting publisher.
// Reports records/s, MB/s and the peak Go heap.
func BenchmarkTailThroughput(b *testing.B) {
	const n = 200_000
	dir := b.TempDir()
	path := filepath.Join(dir, "audit.log")
	size := writeBenchLog(b, path, n)
	cc := config.Default().Collector
	var peakHeap uint64
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		c := cc.AuditTail
		c.Paths, c.PositionsFile, c.StartAt = []string{path}, filepath.Join(dir, fmt.Sprintf("pos-%d.yaml", i)), "beginning"
		san, _ := redact.New(cc.Redaction, cc.Size, 0, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
		pub := &countPub{}
		tl, err := New(Options{Config: c, Publisher: pub, Sanitizer: san, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- tl.Run(ctx) }()
		var ms runtime.MemStats
		for pub.n.Load() < n {
			runtime.ReadMemStats(&ms)
			peakHeap = max(peakHeap, ms.HeapInuse)
			time.Sleep(20 * time.Millisecond) // the heap's sampling period
		}
		total += time.Since(start)
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	secs := total.Seconds() / float64(b.N)
	b.ReportMetric(n/secs, "records/s")
	b.ReportMetric(float64(size)/secs/1e6, "MB/s")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(size)/n, "bytes/record")
}
