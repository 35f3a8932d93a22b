package report

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/sink"
	esink "github.com/kubesift/kubesift/sink/elasticsearch"
	"github.com/kubesift/kubesift/sink/report/reporttest"
)

// TestSourcesAgree (real Elasticsearch): the same documents, written to an
// NDJSON folder and indexed in Elasticsearch, give the same Summary from
// Dir and from ES — all documents, a window, and an empty store.
func TestSourcesAgree(t *testing.T) {
	var docs []sink.Doc
	es, cfg := reporttest.StoreInES(t, func(c config.ElasticsearchConfig) []sink.Doc { docs = fixture(t, c); return docs })
	src := NewES(es, cfg.Addresses[0], IndicesFrom(cfg))
	if err := src.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeDir(t, dir, docs)
	d, err := NewDir(dir, IndicesFrom(cfg), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		w    Window
	}{
		{"all", Window{}},
		{"window", Window{From: t0.Add(100 * time.Second), To: t0.Add(200 * time.Second)}},
		{"nothing in window", Window{From: t0.Add(-time.Hour), To: t0.Add(-time.Minute)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fromES, err := src.Summary(t.Context(), tc.w)
			if err != nil {
				t.Fatal(err)
			}
			fromDir, err := d.Summary(t.Context(), tc.w)
			if err != nil {
				t.Fatal(err)
			}
			fromES.Source, fromDir.Source = "", ""
			for _, part := range []struct {
				name    string
				es, dir any
			}{
				{"summary", fromES, fromDir}, {"rules", fromES.Rules, fromDir.Rules}, {"actors", fromES.Actors, fromDir.Actors},
				{"reasons", fromES.Reasons, fromDir.Reasons}, {"timeline", fromES.Timeline, fromDir.Timeline},
				{"top alerts", fromES.TopAlerts, fromDir.TopAlerts}, {"posture", fromES.Posture, fromDir.Posture},
			} {
				a, _ := json.Marshal(part.es)
				b, _ := json.Marshal(part.dir)
				if !bytes.Equal(a, b) && part.name != "summary" {
					t.Errorf("%s: Elasticsearch and the folder disagree:\nES:  %s\ndir: %s", part.name, a, b)
				} else if !bytes.Equal(a, b) {
					t.Errorf("the summaries differ")
				}
			}
			if tc.name == "all" && (fromES.Alerts != 40 || fromES.Posture == nil) {
				t.Errorf("ES summary has %d alerts, posture %v", fromES.Alerts, fromES.Posture)
			}
		})
	}
	empty := NewES(es, "", Indices{Audit: "ksreport-missing-a", Events: "ksreport-missing-e", Alerts: "ksreport-missing-al",
		Findings: "ksreport-missing-f", Scores: "ksreport-missing-s"})
	s, err := empty.Summary(t.Context(), Window{})
	if err != nil {
		t.Fatalf("missing indices: %v", err)
	}
	if s.Alerts != 0 || s.Posture != nil {
		t.Errorf("missing indices gave %+v", s)
	}
}

// TestESAnswers: a missing index reads as empty; any other non-2xx answer
// is an error of the project's status classifier naming the operation and
// Elasticsearch's reason, never nil.
func TestESAnswers(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr string // "" means no error
	}{
		{"index missing", http.StatusNotFound, `{"error":{"type":"index_not_found_exception","reason":"no such index"}}`, ""},
		{"forbidden", http.StatusForbidden, `{"error":{"type":"security_exception","reason":"action [indices:data/read/search] is unauthorized"}}`, "security_exception"},
		{"overloaded", http.StatusServiceUnavailable, `{"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}`, "es_rejected_execution_exception"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Elastic-Product", "Elasticsearch")
				w.Header().Set("Content-Type", "application/json")
				if strings.Contains(r.URL.Path, "_refresh") {
					w.Write([]byte(`{}`))
					return
				}
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			client, err := esink.NewClient(config.ElasticsearchConfig{Addresses: []string{srv.URL}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = NewES(client, srv.URL, Indices{Alerts: "a", Audit: "b"}).Summary(context.Background(), Window{})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Summary: %v, want an empty report", err)
				}
				return
			}
			var se *sink.StatusError
			if !errors.As(err, &se) || se.StatusCode != tc.status || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Summary: %v; want a *sink.StatusError %d naming %s", err, tc.status, tc.wantErr)
			}
		})
	}
}
