package integration

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// peakRSSLimitMiB is what eight concurrent 32 MiB bodies may cost the
// collector, with room under the chart's 512Mi container limit.
const peakRSSLimitMiB = 400

// hookPoster posts EventLists to a collector's webhook the way
// kube-apiserver does: a 429 or 503 is retried after its Retry-After until
// the batch is acknowledged or the deadline passes.
type hookPoster struct {
	t        *testing.T
	c        *http.Client
	url      string
	deadline time.Time

	mu    sync.Mutex
	codes map[int]int // answers seen, retries included
}

// post sends body until it is answered 200 and returns how long that took
// (retries included); it fails the test on any other final answer.
func (p *hookPoster) post(name, body string) time.Duration {
	start := time.Now()
	for {
		res, err := p.c.Post(p.url, "application/json", strings.NewReader(body))
		if err != nil {
			p.t.Errorf("%s: %v", name, err)
			return 0
		}
		msg, _ := io.ReadAll(res.Body)
		res.Body.Close()
		took := time.Since(start)
		p.mu.Lock()
		p.codes[res.StatusCode]++
		p.mu.Unlock()
		switch {
		case res.StatusCode == http.StatusOK:
			return took
		case res.StatusCode != http.StatusTooManyRequests && res.StatusCode != http.StatusServiceUnavailable:
			p.t.Errorf("%s: HTTP %d %s", name, res.StatusCode, strings.TrimSpace(string(msg)))
			return took
		case time.Now().After(p.deadline):
			p.t.Errorf("%s: still answered %d at the deadline", name, res.StatusCode)
			return took
		}
		wait, _ := strconv.Atoi(res.Header.Get("Retry-After"))
		// The API server's webhook client backs off at least as long.
		<-time.After(time.Duration(max(wait, 1)) * time.Second)
	}
}

// codesSeen returns the answers seen since the last call.
func (p *hookPoster) codesSeen() map[int]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.codes
	p.codes = map[int]int{}
	return c
}

// steady is what steadyTraffic sent: the record IDs acknowledged and the
// longest time one batch took to be acknowledged, retries included.
type steady struct {
	ids     []string
	slowest time.Duration
}

// steadyTraffic posts a small valid batch every interval until stop is
// closed.
func steadyTraffic(p *hookPoster, prefix string, interval time.Duration, stop <-chan struct{}) <-chan steady {
	out := make(chan steady, 1)
	go func() {
		var s steady
		for i := 0; ; i++ {
			select {
			case <-stop:
				out <- s
				return
			case <-time.After(interval):
			}
			items := make([]string, 5)
			for j := range items {
				id := fmt.Sprintf("%s-%d-%d", prefix, i, j)
				items[j] = badInputEvent(id, 100)
				s.ids = append(s.ids, id+":ResponseComplete")
			}
			s.slowest = max(s.slowest, p.post("steady batch", eventListOf(items...)))
		}
	}()
	return out
}

// postAll posts bodies concurrently, each until it is acknowledged, while
// steadyTraffic sends small batches (IDs starting with prefix) every 100 ms;
// it returns how long the bodies took and what the steady traffic sent.
func (p *hookPoster) postAll(what string, bodies []string, prefix string) (time.Duration, steady) {
	stop := make(chan struct{})
	valid := steadyTraffic(p, prefix, 100*time.Millisecond, stop)
	start := time.Now()
	var wg sync.WaitGroup
	for i, body := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.post(fmt.Sprintf("%s %d", what, i), body)
		}()
	}
	wg.Wait()
	took := time.Since(start)
	close(stop)
	return took, <-valid
}

func eventListOf(items ...string) string {
	return `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + strings.Join(items, ",") + `]}`
}

// TestCollectWebhookMemory runs the real `kubesift collect` (default intake
// settings: max_inflight_bytes 128 MiB, max_in_flight 8) against the real
// Kafka and posts what a hostile or just very busy API server could:
//
//  1. eight concurrent 32 MiB EventLists (21 events of 1.5 MiB each, whose
//     bodies the size policy drops) while small valid batches keep coming:
//     the collector's peak RSS stays under peakRSSLimitMiB, and every record
//     of every batch is on the audit topic;
//  2. eight concurrent bodies of 100,000 garbage items ({} and 1): the time
//     until all of them are acknowledged (every bad item counted and kept in
//     a durable dead letter) is printed, and valid batches sent meanwhile
//     are acknowledged within a bounded time.
func TestCollectWebhookMemory(t *testing.T) {
	testenv.Short(t)
	brokers := testenv.KafkaBrokers(t)
	k := testenv.KubeAPIServer(t) // for the webhook certificates only
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	hookAddr := testenv.FreeAddr(t) // kube-apiserver does not post here, the test does
	e := newCollectEnv(t, "mem", brokers, k, colOpts{webhookListen: hookAddr})
	c := e.start("collect")
	p := &hookPoster{t: t, c: webhookClient(t, k), url: "https://" + hookAddr + "/audit",
		deadline: time.Now().Add(90 * time.Second), codes: map[int]int{}}

	// Phase 1: eight 32 MiB bodies and steady traffic.
	const bodies, perBody, blob = 8, 21, 1536 << 10
	var want []string
	big := make([]string, bodies)
	for b := range big {
		items := make([]string, perBody)
		for i := range items {
			id := fmt.Sprintf("mem-%s-%d-%d", run, b, i)
			items[i] = badInputEvent(id, blob)
			want = append(want, id+":ResponseComplete")
		}
		big[b] = eventListOf(items...)
		if len(big[b]) > 32<<20 {
			t.Fatalf("body %d is %d bytes, over max_body_bytes", b, len(big[b]))
		}
	}
	bigTook, sent := p.postAll("32 MiB body", big, "steady-"+run)
	want = append(want, sent.ids...)
	peak := c.PeakRSSKiB() >> 10
	t.Logf("eight 32 MiB bodies acknowledged in %s; peak RSS %d MiB (limit %d MiB); answers %v; %d steady records, slowest batch acknowledged in %s",
		bigTook.Round(time.Millisecond), peak, peakRSSLimitMiB, p.codesSeen(), len(sent.ids), sent.slowest.Round(time.Millisecond))
	if peak >= peakRSSLimitMiB {
		t.Errorf("peak RSS %d MiB, want under %d MiB", peak, peakRSSLimitMiB)
	}
	testenv.WaitFor(t, "every acknowledged record on the audit topic", time.Minute, func() bool {
		got := map[string]bool{}
		for _, m := range testenv.ReadTopic(t, e.broker, e.topics.audit) {
			got[colHeader(m, record.HeaderID)] = true
		}
		missing := slices.DeleteFunc(slices.Clone(want), func(id string) bool { return got[id] })
		if len(missing) > 0 {
			t.Logf("%d of %d records not on the topic yet (e.g. %s)", len(missing), len(want), missing[0])
		}
		return len(missing) == 0
	})

	// Phase 2: eight bodies of 100,000 garbage items, and valid batches.
	const garbageItems = 100_000
	items := make([]string, garbageItems)
	for i := range items {
		items[i] = []string{"{}", "1"}[i%2]
	}
	garbage := eventListOf(items...)
	dlBefore := e.metric("kubesift_collector_dead_letters_total", "source", "audit-webhook")
	badBefore := e.metric("kubesift_collector_rejected_total", "source", "audit-webhook", "reason", "malformed")
	p.deadline = time.Now().Add(60 * time.Second) // no poster runs now
	cleared, sent := p.postAll("garbage body", slices.Repeat([]string{garbage}, bodies), "during-garbage-"+run)
	dls := e.metric("kubesift_collector_dead_letters_total", "source", "audit-webhook") - dlBefore
	bad := e.metric("kubesift_collector_rejected_total", "source", "audit-webhook", "reason", "malformed") - badBefore
	t.Logf("eight bodies of %d garbage items cleared (%v bad items counted, kept in %v durable dead letters) in %s; answers %v; valid batches meanwhile: %d records, slowest acknowledged in %s",
		garbageItems, bad, dls, cleared.Round(time.Millisecond), p.codesSeen(), len(sent.ids), sent.slowest.Round(time.Millisecond))
	if bad != bodies*garbageItems || dls <= 0 {
		t.Errorf("%v bad items counted in %v dead letters, want %d in some", bad, dls, bodies*garbageItems)
	}
	if len(sent.ids) == 0 || sent.slowest > 10*time.Second {
		t.Errorf("%d valid records sent meanwhile, slowest batch acknowledged in %s; want some, each within 10s", len(sent.ids), sent.slowest)
	}
	if c.Exited() {
		t.Fatalf("collect exited:\n%s", testenv.Tail(c.LogPath, 30))
	}
}
