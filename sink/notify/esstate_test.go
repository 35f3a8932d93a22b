package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/sink/ecs"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// TestESStatesUpdatesAlertDocuments (real Elasticsearch, the alerts mapping
// of sink/ecs): states are coalesced per alert and written into
// kubesift.delivery of the alert documents; an update for a document that
// never appears is dropped as missing after a few flushes.
func TestESStatesUpdatesAlertDocuments(t *testing.T) {
	es, err := elasticsearch.NewClient(config.ElasticsearchConfig{Addresses: []string{esURL(t)}})
	if err != nil {
		t.Fatal(err)
	}
	index := fmt.Sprintf("kubesift-alerts-test-%d", time.Now().UnixNano())
	t.Cleanup(func() { es.Indices.Delete([]string{index}) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	do := func(method, path string, body any) (int, map[string]any) {
		t.Helper()
		var b []byte
		if body != nil {
			b, _ = json.Marshal(body)
		}
		req, _ := http.NewRequestWithContext(ctx, method, path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		res, err := es.Perform(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(res.Body).Decode(&out)
		return res.StatusCode, out
	}
	if st, out := do(http.MethodPut, "/"+index, map[string]any{"mappings": ecs.AlertsMappings()}); st != 200 {
		t.Fatalf("create index: %d %v", st, out)
	}
	for _, id := range []string{"a1", "a2"} {
		doc := map[string]any{"@timestamp": t0, "rule": map[string]any{"id": "r"}, "kubesift": map[string]any{"delivery": map[string]any{"state": ecs.DeliveryPending}}}
		if st, out := do(http.MethodPut, "/"+index+"/_create/"+id+"?refresh=true", doc); st != 201 {
			t.Fatalf("index %s: %d %v", id, st, out)
		}
	}
	s, err := NewESStates(es, index, 100, time.Hour, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.AlertState("a1", StateGrouped, "sec {}:{}")
	s.AlertState("a1", StateDelivered, "sec/slack[0]")
	s.AlertState("a2", StateFailed, "sec/webhook[0]: webhook post: HTTP 400 Bad Request")
	s.AlertState("never-indexed", StateDelivered, "x")
	for range missingAttempts {
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if s.Pending() != 0 {
		t.Errorf("%d updates still pending", s.Pending())
	}
	if got := testutil.ToFloat64(s.updates.WithLabelValues("updated")); got != 2 {
		t.Errorf("%v updated, want 2 (a1 coalesced)", got)
	}
	if got := testutil.ToFloat64(s.updates.WithLabelValues("missing")); got != 1 {
		t.Errorf("%v missing, want 1", got)
	}
	for id, want := range map[string]string{"a1": "delivered sec/slack[0]", "a2": "failed sec/webhook[0]: webhook post: HTTP 400"} {
		_, out := do(http.MethodGet, "/"+index+"/_doc/"+id, nil)
		d := out["_source"].(map[string]any)["kubesift"].(map[string]any)["delivery"].(map[string]any)
		if got := fmt.Sprint(d["state"], " ", d["reason"]); !strings.HasPrefix(got, want) || d["updated"] == nil {
			t.Errorf("%s: delivery %v, want %q", id, d, want)
		}
	}
	// The state is a keyword: the alerts can be filtered by it.
	do(http.MethodPost, "/"+index+"/_refresh", nil)
	_, out := do(http.MethodPost, "/"+index+"/_count", map[string]any{"query": map[string]any{"term": map[string]any{"kubesift.delivery.state": "delivered"}}})
	if out["count"] != float64(1) {
		t.Errorf("count of delivered: %v", out)
	}
}

func TestESStatesNeverBlocks(t *testing.T) {
	s, _ := NewESStates(nil, "x", 2, time.Hour, nil, nil)
	for i := range 10 {
		s.AlertState(fmt.Sprint(i), StateDelivered, "")
	}
	s.AlertState("0", StateFailed, "newer state of a queued alert is kept")
	if s.Pending() != 2 || testutil.ToFloat64(s.updates.WithLabelValues("dropped")) != 8 {
		t.Errorf("pending %d dropped %v", s.Pending(), testutil.ToFloat64(s.updates.WithLabelValues("dropped")))
	}
}
