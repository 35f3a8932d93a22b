package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// TestDeadman (real Elasticsearch for the last-seen query): a cluster whose
// newest record is older than its threshold raises one alert, a fresh one
// none, and a configured cluster never seen raises one only after its
// threshold since the notifier started.
func TestDeadman(t *testing.T) {
	es, err := elasticsearch.NewClient(config.ElasticsearchConfig{Addresses: []string{esURL(t)}})
	if err != nil {
		t.Fatal(err)
	}
	index := fmt.Sprintf("kubesift-deadman-test-%d", time.Now().UnixNano())
	t.Cleanup(func() { es.Indices.Delete([]string{index}) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	put := func(path string, body any) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		res, err := es.Perform(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode > 299 {
			t.Fatalf("PUT %s: %d", path, res.StatusCode)
		}
	}
	put("/"+index, map[string]any{"mappings": map[string]any{"properties": map[string]any{
		"@timestamp": map[string]any{"type": "date"}, "orchestrator": map[string]any{"properties": map[string]any{
			"cluster": map[string]any{"properties": map[string]any{"name": map[string]any{"type": "keyword"}}}}}}}})
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for i, d := range []struct {
		cluster string
		age     time.Duration
	}{{"fresh", time.Minute}, {"stale", time.Hour}, {"stale", 2 * time.Hour}} {
		put(fmt.Sprintf("/%s/_doc/%d?refresh=true", index, i), map[string]any{
			"@timestamp": now.Add(-d.age), "orchestrator": map[string]any{"cluster": map[string]any{"name": d.cluster}}})
	}
	clock := now
	m := &Deadman{
		Seen:      ESLastSeen(es, []string{index, "no-such-stream"}),
		Threshold: 15 * time.Minute, Clusters: map[string]time.Duration{"never": 30 * time.Minute},
		Severity: rules.SeverityHigh, Now: func() time.Time { return clock },
	}
	got, err := m.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Cluster != "stale" || got[0].RuleID != DeadmanRuleID ||
		got[0].ID != fmt.Sprintf("%s:stale:%d", DeadmanRuleID, now.Add(-time.Hour).Unix()) {
		t.Fatalf("first check: %+v", got)
	}
	// 31 minutes later: stale yields the same alert (same ID: dedup'd in
	// its group), fresh has gone silent too, and the never-seen cluster is
	// reported once its threshold since the start has passed.
	clock = now.Add(31 * time.Minute)
	got, err = m.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Cluster != "fresh" || got[1].Cluster != "never" || got[2].ID != fmt.Sprintf("%s:stale:%d", DeadmanRuleID, now.Add(-time.Hour).Unix()) {
		t.Errorf("second check: %+v", got)
	}
}
