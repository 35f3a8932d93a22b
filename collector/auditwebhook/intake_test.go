package auditwebhook

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
)

func inflightBytes(n int64) envOpt {
	return func(c *config.AuditWebhookConfig) { c.MaxInflightBytes = n }
}

func bodyReadTimeout(d time.Duration) envOpt {
	return func(c *config.AuditWebhookConfig) { c.BodyReadTimeout = d }
}

// trickle opens a connection that sends the headers of a POST with a body of
// contentLength bytes and only its first byte, then stalls. It returns the
// connection, from which the answer can be read.
func (e *env) trickle(contentLength int) (*tls.Conn, *bufio.Reader) {
	e.t.Helper()
	u, _ := url.Parse(e.url)
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: e.pki.serverCA, Certificates: []tls.Certificate{e.pki.goodClient}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", u.Path, u.Host, contentLength)
	return conn, bufio.NewReader(conn)
}

// TestTricklingClientsDoNotStarveValidBatches: as many clients as there are
// max_in_flight slots send their bodies a byte at a time; since a slot is
// taken only once the body is read, valid batches still get 200, and the
// stalled bodies are answered 408 at body_read_timeout.
func TestTricklingClientsDoNotStarveValidBatches(t *testing.T) {
	const slots = 3
	e := start(t, maxInFlight(slots), bodyReadTimeout(2*time.Second))
	readers := make([]*bufio.Reader, slots)
	for i := range readers {
		_, readers[i] = e.trickle(1000)
	}
	testenv.WaitFor(t, "trickling bodies admitted", 5*time.Second, func() bool { return e.rcv.budget.inUse() == slots*1000 })
	c := e.client(&e.pki.goodClient)
	for i := range 5 {
		if resp := e.post(c, eventList(event(fmt.Sprint("v", i)))); resp.StatusCode != http.StatusOK {
			t.Fatalf("valid batch %d answered %d while %d clients trickle", i, resp.StatusCode, slots)
		}
	}
	for i, br := range readers {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("trickling client %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get("Retry-After") == "" {
			t.Errorf("trickling client %d: %d (Retry-After %q), want 408 with Retry-After", i, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	if got := testutil.ToFloat64(e.rcv.m.rejected.WithLabelValues("timeout")); got != slots {
		t.Errorf("rejected{timeout} = %v, want %d", got, slots)
	}
	testenv.WaitFor(t, "budget given back", 5*time.Second, func() bool { return e.rcv.budget.inUse() == 0 })
}

// TestInflightBytesBudget: with one large body held (its Publish blocked),
// a request whose Content-Length does not fit in what is left of
// max_inflight_bytes, or a chunked one that outgrows it, is answered 429
// with Retry-After and counted; once the budget is free the same requests
// are accepted.
func TestInflightBytesBudget(t *testing.T) {
	items := func(prefix string, n int) string {
		ev := make([]string, n)
		for i := range ev {
			ev[i] = event(fmt.Sprintf("%s%d", prefix, i))
		}
		return eventList(ev...)
	}
	held := items("held", 170) // ~50 KiB
	tests := []struct {
		name    string
		body    string
		chunked bool
	}{
		{"content-length over what is left", items("known", 90), false},
		{"chunked body outgrowing what is left", items("chunked", 90), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, maxBody(100<<10), inflightBytes(int64(len(held))+20<<10))
			e.pub.block, e.pub.entered = make(chan struct{}), make(chan struct{}, 1)
			c := e.client(&e.pki.goodClient)
			first := make(chan int, 1)
			go func() { first <- e.post(c, held).StatusCode }()
			<-e.pub.entered
			send := func() *http.Response {
				var body io.Reader = strings.NewReader(tc.body)
				if tc.chunked {
					body = io.MultiReader(body) // hides the length: sent chunked
				}
				req, _ := http.NewRequest(http.MethodPost, e.url, body)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp
			}
			if resp := send(); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
				t.Errorf("over the budget: %d (Retry-After %q), want 429", resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			if got := testutil.ToFloat64(e.rcv.m.rejected.WithLabelValues("budget")); got != 1 {
				t.Errorf("rejected{budget} = %v", got)
			}
			close(e.pub.block)
			if code := <-first; code != http.StatusOK {
				t.Fatalf("held request: %d", code)
			}
			if resp := send(); resp.StatusCode != http.StatusOK {
				t.Errorf("retry with the budget free: %d", resp.StatusCode)
			}
			testenv.WaitFor(t, "budget given back", 5*time.Second, func() bool { return e.rcv.budget.inUse() == 0 })
		})
	}
}

// TestBadItemRunsAreFewDeadLetters: consecutive bad items of a list become
// one dead letter (a JSON array of them) up to the dead-letter size limit,
// so a body of garbage costs a few Kafka messages; every item is still kept
// and counted, and a good item between bad ones ends the run.
func TestBadItemRunsAreFewDeadLetters(t *testing.T) {
	garbage := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = []string{"{}", "1"}[i%2]
		}
		return out
	}
	tests := []struct {
		name      string
		items     []string
		wantDLs   int
		wantIDs   int
		wantFirst string // data of the first dead letter, when set
	}{
		{"a short run", append(append([]string{event("g1")}, garbage(3)...), event("g2")), 1, 2, `[{},1,{}]`},
		{"runs split by a good item", append(append(garbage(2), event("g1")), garbage(2)...), 2, 1, `[{},1]`},
		// The test receiver keeps 1024 bytes per dead letter: 2,000 items
		// of 2.5 bytes on average (with the commas) need five.
		{"a run over the size limit", garbage(2000), 5, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t)
			if resp := e.post(e.client(&e.pki.goodClient), eventList(tc.items...)); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			dls := e.pub.deadLetters()
			if len(dls) != tc.wantDLs || len(e.pub.ids()) != tc.wantIDs {
				t.Fatalf("%d dead letters and %d records, want %d and %d", len(dls), len(e.pub.ids()), tc.wantDLs, tc.wantIDs)
			}
			if tc.wantFirst != "" && string(dls[0].Data) != tc.wantFirst {
				t.Errorf("first dead letter %s, want %s", dls[0].Data, tc.wantFirst)
			}
			bad, kept := 0, 0
			for _, it := range tc.items {
				if !strings.HasPrefix(it, `{"kind"`) {
					bad++
				}
			}
			for _, dl := range dls {
				if len(dl.Data) > 1024 || dl.Reason == "" || dl.Error == "" {
					t.Errorf("dead letter of %d bytes, reason %q, error %q", len(dl.Data), dl.Reason, dl.Error)
				}
				kept += strings.Count(string(dl.Data), "{}") + strings.Count(string(dl.Data), "1")
			}
			if kept != bad {
				t.Errorf("%d bad items kept in the dead letters, want all %d", kept, bad)
			}
			if got := testutil.ToFloat64(e.rcv.m.rejected.WithLabelValues("malformed")); got != float64(bad) {
				t.Errorf("rejected{malformed} = %v, want %d", got, bad)
			}
		})
	}
}

// TestSmallBatchesKeepASlot: bodies of smallBody or more may hold only
// max_in_flight-1 slots, so an ordinary batch is processed while large
// bodies hold the rest, instead of waiting behind them.
func TestSmallBatchesKeepASlot(t *testing.T) {
	e := start(t, maxInFlight(2))
	e.pub.block, e.pub.entered = make(chan struct{}), make(chan struct{}, 1)
	items := make([]string, smallBody/300)
	for i := range items {
		items[i] = event(fmt.Sprint("large-", i))
	}
	large := eventList(items...)
	if len(large) < smallBody {
		t.Fatalf("large body is only %d bytes", len(large))
	}
	c := e.client(&e.pki.goodClient)
	codes := make(chan int, 3)
	post := func(body string) { codes <- e.post(c, body).StatusCode }
	go post(large)
	<-e.pub.entered // the first large body holds a slot
	go post(large)
	select {
	case code := <-codes:
		if code != http.StatusTooManyRequests {
			t.Fatalf("second large body: %d, want 429", code)
		}
	case <-e.pub.entered:
		t.Fatal("the second large body took the slot kept for small ones")
	}
	go post(eventList(event("small")))
	<-e.pub.entered // the small batch is being published beside the large body
	close(e.pub.block)
	for range 2 {
		if code := <-codes; code != http.StatusOK {
			t.Errorf("status %d, want 200", code)
		}
	}
	if got := testutil.ToFloat64(e.rcv.m.rejected.WithLabelValues("busy")); got != 1 {
		t.Errorf("rejected{busy} = %v, want 1", got)
	}
}

// TestBodyDeadlineEndsWithTheBody: a batch whose publishing takes longer
// than body_read_timeout is still acknowledged; the deadline bounds the
// body's arrival, not the request, whether the body was read to its
// Content-Length or to the end of its chunks (after which net/http watches
// the connection, and a deadline passing would cancel the request).
func TestBodyDeadlineEndsWithTheBody(t *testing.T) {
	const timeout = time.Second
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprint("chunked=", chunked), func(t *testing.T) {
			e := start(t, bodyReadTimeout(timeout))
			e.pub.block, e.pub.entered = make(chan struct{}), make(chan struct{}, 1)
			var body io.Reader = strings.NewReader(eventList(event("slow")))
			if chunked {
				body = io.MultiReader(body)
			}
			req, _ := http.NewRequest(http.MethodPost, e.url, body)
			got := make(chan int, 1)
			go func() {
				resp, err := e.client(&e.pki.goodClient).Do(req)
				if err != nil {
					t.Error(err)
					got <- 0
					return
				}
				resp.Body.Close()
				got <- resp.StatusCode
			}()
			<-e.pub.entered
			select {
			case code := <-got:
				t.Fatalf("answered %d while Publish was still running", code)
			case <-time.After(2 * timeout): // past the body's deadline
			}
			close(e.pub.block)
			if code := <-got; code != http.StatusOK {
				t.Fatalf("status %d, want 200", code)
			}
		})
	}
}
