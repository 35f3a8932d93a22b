package elasticsearch

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
)

// TestUsesNamesNonResourceRequestsByPath: the request URI of a
// non-resource request carries its query, which an RBAC nonResourceURLs
// entry does not match, so the use is named by the path alone. The
// answers are canned; TestUsageStoreOnRealElasticsearch runs the query.
func TestUsesNamesNonResourceRequestsByPath(t *testing.T) {
	// The reason as JSON: its quotes escaped.
	const reason = `"RBAC: allowed by ClusterRoleBinding \"probe\" of ClusterRole \"probe\" to User \"kubelet-probe\""`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		body, _ := io.ReadAll(r.Body)
		if !strings.Contains(string(body), `"must_not"`) { // the resource requests' query
			w.Write([]byte(`{"aggregations":{"u":{"buckets":[]}}}`))
			return
		}
		w.Write([]byte(`{"aggregations":{"u":{"buckets":[
			{"key":{"reason":` + reason + `,"verb":"get","uri":"/healthz?verbose"},"last":{"value":0,"value_as_string":"2026-06-01T12:00:00.000Z"}},
			{"key":{"reason":` + reason + `,"verb":"get","uri":"/readyz"},"last":{"value":0,"value_as_string":"2026-06-01T12:00:01.000Z"}}
		]}}}`))
	}))
	defer srv.Close()
	cfg := config.Default().Sink.Elasticsearch
	cfg.Addresses = []string{srv.URL}
	es, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	uses, st, err := NewUsageStore(es, "usage", "audit").Uses(context.Background(), "prod", time.Time{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range uses {
		got = append(got, u.Pair.String())
	}
	if strings.Join(got, "; ") != "get /healthz; get /readyz" || st.Parsed != 2 {
		t.Errorf("uses %q, stats %+v; want get /healthz; get /readyz, 2 parsed", got, st)
	}
}
