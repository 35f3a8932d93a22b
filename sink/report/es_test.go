package report

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink"
	esink "github.com/kubesift/kubesift/sink/elasticsearch"
)

// storeInES sets up streams and indices unique to the test on the test
// ground's Elasticsearch, as `kubesift setup es` does, writes docs with the
// processor's Writer, and deletes it all at the end.
func storeInES(t *testing.T, docs func(config.ElasticsearchConfig) []sink.Doc) (*esink.Client, config.ElasticsearchConfig) {
	t.Helper()
	u := testenv.ElasticsearchURL(t)
	cfg := config.Default().Sink.Elasticsearch
	cfg.Addresses = []string{u}
	ns := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "")) + fmt.Sprint(time.Now().UnixNano())
	cfg.Streams = config.ESStreamsConfig{Audit: "logs-ksreport.audit-" + ns, Events: "logs-ksreport.events-" + ns, Posture: "logs-ksreport.posture-" + ns}
	cfg.AlertsIndex = "ksreport-alerts-" + ns
	cfg.Findings = config.ESFindingsConfig{Index: "ksreport-findings-" + ns, TransitionsStream: "logs-ksreport.transitions-" + ns, ScoresStream: "metrics-ksreport.scores-" + ns}
	cfg.ILM.Enabled = false
	es, err := esink.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropES(es, cfg) })
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := esink.Setup(ctx, es, cfg, nil); err != nil {
		t.Fatal(err)
	}
	w, err := esink.NewWriter(esink.WriterOptions{Client: es, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var refused []string
	for _, d := range docs(cfg) {
		wg.Add(1)
		if err := w.Add(ctx, d, func(r sink.Result) {
			defer wg.Done()
			if r.Status == sink.Rejected {
				mu.Lock()
				refused = append(refused, d.ID+": "+r.Reason)
				mu.Unlock()
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if len(refused) > 0 {
		t.Fatalf("Elasticsearch refused %q", refused)
	}
	return es, cfg
}

func dropES(es *esink.Client, cfg config.ElasticsearchConfig) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	del := func(path string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, path, nil)
		if res, err := es.Perform(req); err == nil {
			res.Body.Close()
		}
	}
	for _, s := range []string{cfg.Streams.Audit, cfg.Streams.Events, cfg.Streams.Posture, cfg.Findings.TransitionsStream, cfg.Findings.ScoresStream} {
		del("/_data_stream/" + s)
		del("/_index_template/" + esink.IndexTemplateName(s))
	}
	for _, idx := range []string{cfg.AlertsIndex, cfg.Findings.Index} {
		del("/" + idx)
		del("/_index_template/" + esink.IndexTemplateName(idx))
	}
}

// TestSourcesAgree (real Elasticsearch): the same documents, written to an
// NDJSON folder and indexed in Elasticsearch, give the same Summary from
// Dir and from ES — all documents, a window, and an empty store.
func TestSourcesAgree(t *testing.T) {
	var docs []sink.Doc
	es, cfg := storeInES(t, func(c config.ElasticsearchConfig) []sink.Doc { docs = fixture(t, c); return docs })
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
