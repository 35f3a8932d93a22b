package elasticsearch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink"
)

// fakeES answers bulk requests with a scripted function of the request
// number (1-based) and the document IDs in it.
type fakeES struct {
	t      *testing.T
	mu     sync.Mutex
	n      int
	bodies [][]string // IDs per request
	answer func(n int, ids []string) (status int, items []string)
}

// itemJSON renders one filtered bulk item.
func itemJSON(status int, errType string) string {
	if errType == "" {
		return fmt.Sprintf(`{"create":{"status":%d}}`, status)
	}
	return fmt.Sprintf(`{"create":{"status":%d,"error":{"type":%q,"reason":"reason of %s"}}}`, status, errType, errType)
}

func (f *fakeES) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	if r.URL.Path != "/_bulk" {
		w.Write([]byte(`{}`))
		return
	}
	var ids []string
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 0; sc.Scan(); line++ {
		if line%2 == 1 {
			if !json.Valid(sc.Bytes()) {
				f.t.Errorf("invalid source line %q", sc.Bytes())
			}
			continue
		}
		var a map[string]struct {
			Index       string `json:"_index"`
			ID          string `json:"_id"`
			Version     int64  `json:"version"`
			VersionType string `json:"version_type"`
		}
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil || len(a) != 1 {
			f.t.Errorf("bad action line %q", sc.Bytes())
		}
		// Only versioned documents (finding states) are written with index,
		// and always with external versioning.
		act, versioned := a["index"]
		if versioned && (act.Version <= 0 || act.VersionType != "external") {
			f.t.Errorf("index action without an external version: %q", sc.Bytes())
		}
		if c, ok := a["create"]; ok {
			act = c
		} else if !versioned {
			f.t.Errorf("action is neither create nor index: %q", sc.Bytes())
		}
		ids = append(ids, act.ID)
	}
	f.mu.Lock()
	f.n++
	n := f.n
	f.bodies = append(f.bodies, ids)
	f.mu.Unlock()
	status, items := f.answer(n, ids)
	if status == -1 { // drop the connection: no answer at all
		hj, _ := w.(http.Hijacker)
		c, _, _ := hj.Hijack()
		c.Close()
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if status/100 != 2 {
		fmt.Fprintf(w, `{"error":{"type":"es_rejected_execution_exception","reason":"busy"},"status":%d}`, status)
		return
	}
	errs := false
	for _, it := range items {
		if !strings.Contains(it, `"status":201`) {
			errs = true
		}
	}
	fmt.Fprintf(w, `{"errors":%v,"items":[%s]}`, errs, strings.Join(items, ","))
}

func (f *fakeES) requests() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.bodies...)
}

func testWriter(t *testing.T, f *fakeES, mod func(*config.ElasticsearchConfig)) (*Writer, *prometheus.Registry) {
	t.Helper()
	f.t = t
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cfg := config.Default().Sink.Elasticsearch
	cfg.Addresses = []string{srv.URL}
	cfg.RetryBackoff, cfg.RetryMaxBackoff = time.Millisecond, 5*time.Millisecond
	cfg.FlushInterval = 10 * time.Millisecond
	cfg.RequestTimeout = 5 * time.Second
	if mod != nil {
		mod(&cfg)
	}
	es, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	w, err := NewWriter(WriterOptions{Client: es, Config: cfg, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return w, reg
}

// results records done calls and fails on a second call for one ID.
type results struct {
	t  *testing.T
	mu sync.Mutex
	m  map[string]sink.Result
	wg sync.WaitGroup
}

func newResults(t *testing.T) *results { return &results{t: t, m: map[string]sink.Result{}} }

func (r *results) done(id string) func(sink.Result) {
	r.wg.Add(1)
	return func(res sink.Result) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if _, twice := r.m[id]; twice {
			r.t.Errorf("done called twice for %s", id)
			return
		}
		r.m[id] = res
		r.wg.Done()
	}
}

func (r *results) get(id string) (sink.Result, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res, ok := r.m[id]
	return res, ok
}

func doc(id string) sink.Doc {
	return sink.Doc{Index: "logs-test-default", ID: id, Body: []byte(`{"@timestamp":"2026-01-01T00:00:00Z","n":"` + id + `"}`)}
}

func TestWriterPerItemOutcomes(t *testing.T) {
	f := &fakeES{answer: func(n int, ids []string) (int, []string) {
		switch n {
		case 1:
			return http.StatusServiceUnavailable, nil // whole request refused: retried
		case 2:
			var items []string
			for _, id := range ids {
				switch id {
				case "ok":
					items = append(items, itemJSON(201, ""))
				case "dup":
					items = append(items, itemJSON(409, "version_conflict_engine_exception"))
				case "bad":
					items = append(items, itemJSON(400, "mapper_parsing_exception"))
				case "busy", "broken":
					items = append(items, itemJSON(map[string]int{"busy": 429, "broken": 503}[id], "es_rejected_execution_exception"))
				}
			}
			return 200, items
		}
		items := make([]string, len(ids))
		for i := range ids {
			items[i] = itemJSON(201, "")
		}
		return 200, items
	}}
	w, reg := testWriter(t, f, func(c *config.ElasticsearchConfig) { c.Workers = 1; c.FlushInterval = time.Hour })
	res := newResults(t)
	ctx := context.Background()
	for _, id := range []string{"ok", "dup", "bad", "busy", "broken"} {
		if err := w.Add(ctx, doc(id), res.done(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]sink.Status{"ok": sink.Indexed, "dup": sink.Duplicate, "bad": sink.Rejected, "busy": sink.Indexed, "broken": sink.Indexed}
	for id, st := range want {
		got, ok := res.get(id)
		if !ok || got.Status != st {
			t.Errorf("%s: %v (done %v), want %v", id, got.Status, ok, st)
		}
	}
	if r, _ := res.get("bad"); r.Reason != "mapper_parsing_exception: reason of mapper_parsing_exception" {
		t.Errorf("reason = %q", r.Reason)
	}
	reqs := f.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 (503, mixed, retry): %v", len(reqs), reqs)
	}
	if got := strings.Join(reqs[2], ","); got != "busy,broken" {
		t.Errorf("retry request carried %q, want only the refused items", got)
	}
	for name, want := range map[string]float64{
		"kubesift_sink_es_docs_indexed_total":   3,
		"kubesift_sink_es_docs_duplicate_total": 1,
	} {
		if got := testenv.Metric(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := testenv.Metric(t, reg, "kubesift_sink_es_docs_rejected_total", "reason", "mapper_parsing_exception"); got != 1 {
		t.Errorf("rejected = %v", got)
	}
	if got := testenv.Metric(t, reg, "kubesift_sink_es_retries_total", "scope", "item"); got != 2 {
		t.Errorf("item retries = %v", got)
	}
	if got := testenv.Metric(t, reg, "kubesift_sink_es_retries_total", "scope", "request"); got != 1 {
		t.Errorf("request retries = %v", got)
	}
	if got := testenv.Metric(t, reg, "kubesift_sink_es_queued_bytes"); got != 0 {
		t.Errorf("queued bytes after close = %v", got)
	}
}

func allCreated(_ int, ids []string) (int, []string) {
	items := make([]string, len(ids))
	for i := range ids {
		items[i] = itemJSON(201, "")
	}
	return 200, items
}

func TestWriterRetriesWithoutAnswer(t *testing.T) {
	f := &fakeES{answer: func(n int, ids []string) (int, []string) {
		if n <= 2 {
			return -1, nil // connection dropped
		}
		return allCreated(n, ids)
	}}
	w, _ := testWriter(t, f, nil)
	res := newResults(t)
	if err := w.Add(context.Background(), doc("a"), res.done("a")); err != nil {
		t.Fatal(err)
	}
	res.wg.Wait()
	if r, _ := res.get("a"); r.Status != sink.Indexed {
		t.Errorf("status %v", r.Status)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestWriterWholeRequestRefusedForGood(t *testing.T) {
	f := &fakeES{answer: func(int, []string) (int, []string) { return http.StatusRequestEntityTooLarge, nil }}
	w, _ := testWriter(t, f, nil)
	res := newResults(t)
	for _, id := range []string{"a", "b"} {
		w.Add(context.Background(), doc(id), res.done(id))
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		r, _ := res.get(id)
		if r.Status != sink.Rejected || !strings.Contains(r.Reason, "bulk: HTTP 413") {
			t.Errorf("%s: %+v", id, r)
		}
	}
}

// A whole bulk refused for the writer's credentials holds the documents
// (no done, no dead letters) until Elasticsearch accepts them again.
func TestWriterHoldsOnAuthRefusal(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			f := &fakeES{answer: func(n int, ids []string) (int, []string) {
				if n <= 3 {
					return status, nil
				}
				return allCreated(n, ids)
			}}
			w, reg := testWriter(t, f, nil)
			res := newResults(t)
			for _, id := range []string{"a", "b"} {
				if err := w.Add(context.Background(), doc(id), res.done(id)); err != nil {
					t.Fatal(err)
				}
			}
			res.wg.Wait()
			for _, id := range []string{"a", "b"} {
				if r, _ := res.get(id); r.Status != sink.Indexed {
					t.Errorf("%s: %+v, want indexed after the refusal ended", id, r)
				}
			}
			if got := testenv.Metric(t, reg, "kubesift_sink_es_bulk_requests_total", "result", "unauthorized"); got < 1 {
				t.Errorf("unauthorized bulk requests counted %v", got)
			}
			if err := w.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestWriterAddBlocksWhenQueueFull(t *testing.T) {
	release := make(chan struct{})
	var refused atomic.Int32
	f := &fakeES{answer: func(n int, ids []string) (int, []string) {
		select {
		case <-release:
			return allCreated(n, ids)
		default:
			refused.Add(1)
			return http.StatusTooManyRequests, nil // Elasticsearch refusing
		}
	}}
	size := itemSize(doc("d0")) // all test IDs have the same length
	w, reg := testWriter(t, f, func(c *config.ElasticsearchConfig) {
		c.FlushBytes = int(size)
		c.MaxQueuedBytes = 3 * size
	})
	res := newResults(t)
	ctx := context.Background()
	for i := range 3 {
		id := fmt.Sprint("d", i)
		if err := w.Add(ctx, doc(id), res.done(id)); err != nil {
			t.Fatal(err)
		}
	}
	// The budget is used up while Elasticsearch refuses: Add blocks.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := w.Add(short, doc("d3"), func(sink.Result) { t.Error("done called for a refused Add") }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Add on a full queue = %v, want it to block until ctx ends", err)
	}
	if got := testenv.Metric(t, reg, "kubesift_sink_es_queued_bytes"); got != float64(3*size) {
		t.Errorf("queued bytes = %v, want %v", got, 3*size)
	}
	// Elasticsearch comes back: the queue drains and Add proceeds.
	added := make(chan error, 1)
	go func() { added <- w.Add(ctx, doc("d4"), res.done("d4")) }()
	select {
	case err := <-added:
		t.Fatalf("Add returned %v while the queue was still full", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"d0", "d1", "d2", "d4"} {
		if r, ok := res.get(id); !ok || r.Status != sink.Indexed {
			t.Errorf("%s: %v %v", id, r, ok)
		}
	}
	if refused.Load() == 0 {
		t.Error("the server never refused")
	}
}

func TestWriterCloseFlushesAndRefusesLaterAdds(t *testing.T) {
	f := &fakeES{answer: allCreated}
	w, _ := testWriter(t, f, func(c *config.ElasticsearchConfig) { c.FlushInterval = time.Hour })
	res := newResults(t)
	for _, id := range []string{"a", "b", "c"} {
		w.Add(context.Background(), doc(id), res.done(id))
	}
	if len(f.requests()) != 0 {
		t.Fatal("flushed before Close with flush_interval 1h and a large flush_bytes")
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if r, ok := res.get(id); !ok || r.Status != sink.Indexed {
			t.Errorf("%s: %v %v", id, r, ok)
		}
	}
	if err := w.Add(context.Background(), doc("late"), func(sink.Result) { t.Error("done for a refused Add") }); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close = %v", err)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestWriterFlushesByInterval(t *testing.T) {
	f := &fakeES{answer: allCreated}
	w, _ := testWriter(t, f, func(c *config.ElasticsearchConfig) { c.FlushInterval = 20 * time.Millisecond })
	defer w.Close(context.Background())
	res := newResults(t)
	w.Add(context.Background(), doc("a"), res.done("a"))
	waited := make(chan struct{})
	go func() { res.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("a lone document was not flushed by the interval")
	}
}

func TestWriterFlushesBySize(t *testing.T) {
	f := &fakeES{answer: allCreated}
	size := itemSize(doc("a0"))
	w, _ := testWriter(t, f, func(c *config.ElasticsearchConfig) { c.FlushInterval = time.Hour; c.FlushBytes = int(2 * size) })
	defer w.Close(context.Background())
	res := newResults(t)
	for i := range 4 {
		id := fmt.Sprint("a", i)
		w.Add(context.Background(), doc(id), res.done(id))
	}
	res.wg.Wait()
	if n := len(f.requests()); n != 2 {
		t.Errorf("%d bulk requests, want 2 of 2 documents", n)
	}
}

func TestWriterCloseGivesUp(t *testing.T) {
	f := &fakeES{answer: func(int, []string) (int, []string) { return http.StatusServiceUnavailable, nil }}
	w, _ := testWriter(t, f, nil)
	w.Add(context.Background(), doc("a"), func(sink.Result) { t.Error("done called although never written") })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := w.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not written") {
		t.Errorf("Close = %v", err)
	}
}

// TestWriterConcurrent hammers Add from several goroutines against random
// per-item answers: every document gets exactly one final done, and
// nothing retryable is ever reported.
func TestWriterConcurrent(t *testing.T) {
	var seq atomic.Int64
	f := &fakeES{answer: func(n int, ids []string) (int, []string) {
		if seq.Add(1)%7 == 0 {
			return http.StatusBadGateway, nil
		}
		items := make([]string, len(ids))
		for i, id := range ids {
			switch {
			case strings.HasSuffix(id, "3") && n%2 == 0:
				items[i] = itemJSON(429, "es_rejected_execution_exception")
			case strings.HasSuffix(id, "7"):
				items[i] = itemJSON(409, "version_conflict_engine_exception")
			default:
				items[i] = itemJSON(201, "")
			}
		}
		return 200, items
	}}
	w, _ := testWriter(t, f, func(c *config.ElasticsearchConfig) {
		c.Workers = 3
		c.FlushBytes = 2000
		c.MaxQueuedBytes = 8000
	})
	res := newResults(t)
	var wg sync.WaitGroup
	const per = 300
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				id := fmt.Sprintf("g%d-%d", g, i)
				if err := w.Add(context.Background(), doc(id), res.done(id)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	res.mu.Lock()
	defer res.mu.Unlock()
	if len(res.m) != 4*per {
		t.Fatalf("%d done, want %d", len(res.m), 4*per)
	}
	for id, r := range res.m {
		want := sink.Indexed
		if strings.HasSuffix(id, "7") {
			want = sink.Duplicate
		}
		if r.Status != want {
			t.Errorf("%s: %v, want %v", id, r.Status, want)
		}
	}
}

func TestWriteJSONString(t *testing.T) {
	for in, want := range map[string]string{"a:b": `"a:b"`, `q"\`: `"q\"\\"`, "\x01": `"\u0001"`, "\xff": `"\ufffd"`, "é": `"é"`} {
		var b bytes.Buffer
		writeJSONString(&b, in)
		if b.String() != want {
			t.Errorf("%q -> %s, want %s", in, b.String(), want)
		}
	}
}

func TestReasonsCarryNoDocumentContent(t *testing.T) {
	body := []byte(`{"error":{"type":"document_parsing_exception","reason":"[1:17] failed to parse field [source.ip] of type [ip] in document with id 'x'. Preview of field's value: 'secret-ish'","caused_by":{"type":"illegal_argument_exception","reason":"'secret-ish' is not an IP string literal."}}}`)
	got := errorReason(body)
	want := "document_parsing_exception: [1:17] failed to parse field [source.ip] of type [ip] in document with id 'x' (caused by illegal_argument_exception)"
	if got != want {
		t.Errorf("reason = %q\nwant     %q", got, want)
	}
}

// TestWriterInvalidDocumentsDoNotCostTheBatch: documents Elasticsearch
// would refuse as part of the request (its validation fails the whole
// bulk) are Rejected alone, without being sent.
func TestWriterInvalidDocumentsDoNotCostTheBatch(t *testing.T) {
	f := &fakeES{answer: allCreated}
	w, _ := testWriter(t, f, nil)
	res := newResults(t)
	long := doc(strings.Repeat("x", 600))
	lines := doc("lines")
	lines.Body = []byte("{\"a\":\n1}")
	noIndex := doc("noindex")
	noIndex.Index = ""
	for _, d := range []sink.Doc{doc("good"), long, lines, noIndex, {Index: "i", ID: "empty"}} {
		w.Add(context.Background(), d, res.done(d.ID))
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		strings.Repeat("x", 600): "_id is 600 bytes", "lines": "spans lines", "noindex": "without an index", "empty": "without a body",
	}
	for id, reason := range want {
		if r, _ := res.get(id); r.Status != sink.Rejected || !strings.Contains(r.Reason, reason) {
			t.Errorf("%.10s: %+v, want Rejected %q", id, r, reason)
		}
	}
	if r, _ := res.get("good"); r.Status != sink.Indexed {
		t.Errorf("good: %+v", r)
	}
	if reqs := f.requests(); len(reqs) != 1 || len(reqs[0]) != 1 || reqs[0][0] != "good" {
		t.Errorf("sent %v, want only the valid document", reqs)
	}
}

// TestWriterHalvesARefusedRequest: a whole-request 400 is narrowed down by
// halving the batch, so only the document that causes it is Rejected.
func TestWriterHalvesARefusedRequest(t *testing.T) {
	f := &fakeES{answer: func(n int, ids []string) (int, []string) {
		for _, id := range ids {
			if id == "poison" {
				return http.StatusBadRequest, nil
			}
		}
		return allCreated(n, ids)
	}}
	w, _ := testWriter(t, f, func(c *config.ElasticsearchConfig) { c.Workers = 1; c.FlushInterval = time.Hour })
	res := newResults(t)
	ids := []string{"a", "b", "c", "poison", "d", "e", "f"}
	for _, id := range ids {
		w.Add(context.Background(), doc(id), res.done(id))
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		r, _ := res.get(id)
		want := sink.Indexed
		if id == "poison" {
			want = sink.Rejected
		}
		if r.Status != want {
			t.Errorf("%s: %+v, want %v", id, r, want)
		}
	}
	if r, _ := res.get("poison"); !strings.Contains(r.Reason, "HTTP 400") {
		t.Errorf("reason %q", r.Reason)
	}
	if n := len(f.requests()); n > 2*len(ids) {
		t.Errorf("%d requests to isolate one document among %d", n, len(ids))
	}
}
