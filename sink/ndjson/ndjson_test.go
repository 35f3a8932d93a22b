package ndjson

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
)

// results collects done callbacks by document ID.
type results struct {
	mu     sync.Mutex
	got    map[string][]sink.Result
	issued int // callbacks handed out by done
	called int // callbacks called
}

func newResults() *results { return &results{got: map[string][]sink.Result{}} }

func (r *results) done(id string) func(sink.Result) {
	r.mu.Lock()
	r.issued++
	r.mu.Unlock()
	return func(res sink.Result) {
		r.mu.Lock()
		r.got[id] = append(r.got[id], res)
		r.called++
		r.mu.Unlock()
	}
}

// count returns how many done callbacks have been called.
func (r *results) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.called
}

// wait waits until every done handed out has been called.
func (r *results) wait(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	n := r.issued
	r.mu.Unlock()
	testenv.WaitFor(t, fmt.Sprintf("all %d done callbacks", n), time.Minute, func() bool { return r.count() >= n })
}

func doc(index, id string) sink.Doc {
	return sink.Doc{Index: index, ID: id, Body: []byte(`{"event":{"id":"` + id + `"},"n":"` + id + `"}`)}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestWriterOutcomes(t *testing.T) {
	tests := []struct {
		name     string
		existing string // lines already in logs-x.ndjson
		docs     []sink.Doc
		want     map[string]sink.Status
		lines    int // lines in logs-x.ndjson at the end
	}{
		{name: "each document once", docs: []sink.Doc{doc("logs-x", "a"), doc("logs-x", "b")},
			want: map[string]sink.Status{"a": sink.Indexed, "b": sink.Indexed}, lines: 2},
		{name: "same ID twice is a duplicate", docs: []sink.Doc{doc("logs-x", "a"), doc("logs-x", "a")},
			want: map[string]sink.Status{"a": sink.Indexed}, lines: 1},
		{name: "ID in the existing file is a duplicate", existing: `{"event":{"id":"a"}}` + "\n",
			docs: []sink.Doc{doc("logs-x", "a"), doc("logs-x", "c")},
			want: map[string]sink.Status{"a": sink.Duplicate, "c": sink.Indexed}, lines: 2},
		{name: "an index that is no file name is rejected", docs: []sink.Doc{doc("../etc", "a"), doc("logs-x", "b")},
			want: map[string]sink.Status{"a": sink.Rejected, "b": sink.Indexed}, lines: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.existing != "" {
				if err := os.WriteFile(filepath.Join(dir, "logs-x.ndjson"), []byte(tc.existing), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			w, err := New(Options{Dir: dir, FlushInterval: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			r := newResults()
			for _, d := range tc.docs {
				if err := w.Add(context.Background(), d, r.done(d.ID)); err != nil {
					t.Fatal(err)
				}
			}
			r.wait(t)
			if err := w.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			for id, st := range tc.want {
				res := r.got[id]
				if len(res) == 0 {
					t.Fatalf("%s: no done", id)
				}
				if res[0].Status != st {
					t.Errorf("%s: first done %v, want %v (reason %q)", id, res[0].Status, st, res[0].Reason)
				}
				for _, x := range res[1:] {
					if x.Status != sink.Duplicate {
						t.Errorf("%s: later done %v, want duplicate", id, x.Status)
					}
				}
			}
			if got := readLines(t, filepath.Join(dir, "logs-x.ndjson")); len(got) != tc.lines {
				t.Errorf("lines = %d, want %d:\n%s", len(got), tc.lines, strings.Join(got, "\n"))
			}
			if res := r.got["a"]; len(res) > 0 && res[0].Status == sink.Rejected && !strings.Contains(res[0].Reason, `"../etc"`) {
				t.Errorf("reason %q does not name the index", res[0].Reason)
			}
		})
	}
}

// flaky fails its first writes after writing half of what it is given:
// the torn line's tail must be written exactly once, after it.
type flaky struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	fails int
	none  bool // a failing write writes nothing (a full disk)
}

func (f *flaky) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fails > 0 {
		f.fails--
		n := len(b) / 2
		if f.none {
			n = 0
		}
		f.buf.Write(b[:n])
		return n, errors.New("no space left on device")
	}
	return f.buf.Write(b)
}
func (f *flaky) Sync() error  { return nil }
func (f *flaky) Close() error { return nil }

func TestWriterRetriesPartialWrites(t *testing.T) {
	fl := &flaky{fails: 3}
	orig := openFile
	openFile = func(string) (handle, error) { return fl, nil }
	t.Cleanup(func() { openFile = orig })

	w, err := New(Options{Dir: t.TempDir(), FlushInterval: 5 * time.Millisecond,
		Backoff: backoff.Policy{Initial: time.Millisecond, Max: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	r := newResults()
	var want []string
	for i := range 50 {
		d := doc("logs-x", fmt.Sprint("id-", i))
		want = append(want, string(d.Body))
		if err := w.Add(context.Background(), d, r.done(d.ID)); err != nil {
			t.Fatal(err)
		}
	}
	r.wait(t)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(fl.buf.String(), "\n"), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("file differs from the documents in order:\n got %q\nwant %q", got, want)
	}
	for id, res := range r.got {
		if len(res) != 1 || res[0].Status != sink.Indexed {
			t.Errorf("%s: %v", id, res)
		}
	}
}

// TestWriterBackpressure: with a buffer of a few documents, Add blocks
// until the flusher has written — a full buffer is written at once, not at
// the (hour-long) flush interval — and ends with ctx. The documents still
// below the flush threshold after the last Add wait for the interval or for
// Close; how many they are depends on when the flusher woke, so the test
// forces the case where the last one is left alone.
func TestWriterBackpressure(t *testing.T) {
	const docs = 20 // ~45 bytes each: the buffer holds two
	for _, tc := range []struct {
		name string
		// wakeBeforeLast wakes the flusher and waits until it has written
		// everything before the last Add, as a wake-up left over from an
		// earlier blocked Add does.
		wakeBeforeLast bool
	}{
		{"as scheduled", false},
		{"flusher woken before the last add", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := New(Options{Dir: t.TempDir(), MaxBufferedBytes: 100, FlushInterval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close(context.Background())
			r := newResults()
			for i := range docs {
				if i == docs-1 && tc.wakeBeforeLast {
					w.signal()
					testenv.WaitFor(t, "the buffer written", time.Minute, func() bool {
						w.mu.Lock()
						defer w.mu.Unlock()
						return w.buffered == 0
					})
				}
				d := doc("logs-x", fmt.Sprint("doc-", i))
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := w.Add(ctx, d, r.done(d.ID))
				cancel()
				if err != nil {
					t.Fatalf("doc %d: %v (a full buffer must be flushed, not wait for the interval)", i, err)
				}
			}
			// The last Add found room for ~45 bytes in a 100-byte buffer, so
			// at most one document before it was still unwritten: the first
			// docs-2 are written without the interval.
			testenv.WaitFor(t, fmt.Sprintf("%d documents done before the flush interval", docs-2), time.Minute,
				func() bool { return r.count() >= docs-2 })
			if err := w.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := r.count(); got != docs {
				t.Fatalf("%d done callbacks after Close, want %d", got, docs)
			}
			for id, res := range r.got {
				if len(res) != 1 || res[0].Status != sink.Indexed {
					t.Errorf("%s: %v, want one Indexed", id, res)
				}
			}
		})
	}

	// A writer that cannot write holds Add until ctx ends.
	fl := &flaky{fails: 1 << 30, none: true}
	orig := openFile
	openFile = func(string) (handle, error) { return fl, nil }
	t.Cleanup(func() { openFile = orig })
	w2, err := New(Options{Dir: t.TempDir(), MaxBufferedBytes: 100, FlushInterval: time.Millisecond,
		Backoff: backoff.Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var addErr error
	for i := 0; i < 10 && addErr == nil; i++ {
		addErr = w2.Add(ctx, doc("logs-x", fmt.Sprint("x-", i)), func(sink.Result) {})
	}
	if !errors.Is(addErr, context.DeadlineExceeded) {
		t.Fatalf("Add on a failing disk = %v, want the context's deadline", addErr)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer ccancel()
	if err := w2.Close(cctx); err == nil {
		t.Fatal("Close with unwritable documents returned nil")
	}
}

// TestSameDocumentsAsElasticsearch: the files hold exactly the bodies the
// sink/ecs Builder makes — the bodies the Elasticsearch writer sends — for
// the sample audit log and the alerts of the built-in rules on it.
func TestSameDocumentsAsElasticsearch(t *testing.T) {
	data, err := os.ReadFile("../../cmd/kubesift/sample/audit.log")
	if err != nil {
		t.Fatal(err)
	}
	recs, errs := record.DecodeAll(data, "audit.log", record.DecodeOptions{Cluster: record.Cluster{Name: "local"}})
	if len(errs) > 0 || len(recs) == 0 {
		t.Fatalf("sample: %d records, errors %v", len(recs), errs)
	}
	eng, err := rules.New(rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ecs.New(config.Default().Sink.Elasticsearch)
	if err != nil {
		t.Fatal(err)
	}
	fixed := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	b.Now = func() time.Time { return fixed }
	var docs []sink.Doc
	for _, rec := range recs {
		d, err := b.Record(rec)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
		for _, a := range eng.Eval(rec) {
			ad, err := b.Alert(&a)
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, ad)
		}
	}
	dir := t.TempDir()
	w, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	r := newResults()
	want := map[string][]string{}
	for _, d := range docs {
		want[d.Index] = append(want[d.Index], string(d.Body))
		if err := w.Add(context.Background(), d, r.done(d.ID)); err != nil {
			t.Fatal(err)
		}
	}
	r.wait(t)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(want) < 2 {
		t.Fatalf("want records and alerts, got indexes %v", want)
	}
	for idx, lines := range want {
		f, err := os.Open(filepath.Join(dir, idx+".ndjson"))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 64<<20)
		i := 0
		for ; sc.Scan(); i++ {
			if i >= len(lines) || sc.Text() != lines[i] {
				t.Fatalf("%s line %d differs from the builder's document", idx, i+1)
			}
		}
		f.Close()
		if i != len(lines) {
			t.Fatalf("%s: %d lines, want %d", idx, i, len(lines))
		}
	}
	// Every document carries its _id as event.id, which a reopened store
	// reads to deduplicate.
	w2, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	r2 := newResults()
	for _, d := range docs {
		if err := w2.Add(context.Background(), d, r2.done(d.ID)); err != nil {
			t.Fatal(err)
		}
	}
	r2.wait(t)
	_ = w2.Close(context.Background())
	for id, res := range r2.got {
		for _, x := range res {
			if x.Status != sink.Duplicate {
				t.Fatalf("%s after reopening: %v, want duplicate (event.id must equal the document ID)", id, x.Status)
			}
		}
	}
}

// BenchmarkDedupSet prints the heap one stored document costs the
// deduplication set, with the full "index\x00id" string keys the writer
// used before as the baseline in the same run (audit IDs as the recorded
// scenario has them: a UUID, a stage).
//
//	go test -run '^$' -bench DedupSet -benchtime 1x ./sink/ndjson/
func BenchmarkDedupSet(b *testing.B) {
	const n = 1_000_000
	id := func(i int) string {
		return fmt.Sprintf("5b6c1d0e-%04x-4000-8000-%012x:ResponseComplete", i>>16&0xffff, i)
	}
	heap := func(fill func()) float64 { return heapPer(n, fill) }
	for range b.N {
		var strs map[string]struct{}
		strBytes := heap(func() {
			strs = make(map[string]struct{})
			for i := range n {
				strs["logs-kubesift.audit-default\x00"+id(i)] = struct{}{}
			}
		})
		var keys map[docKey]struct{}
		keyBytes := heap(func() {
			keys = make(map[docKey]struct{})
			for i := range n {
				keys[keyOf("logs-kubesift.audit-default", id(i))] = struct{}{}
			}
		})
		runtime.KeepAlive(strs)
		runtime.KeepAlive(keys)
		b.ReportMetric(keyBytes, "B/doc")
		b.ReportMetric(strBytes, "baseline_B/doc")
	}
}

// heapPer is the heap fill leaves allocated, per each of n items.
func heapPer(n int, fill func()) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fill()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}
