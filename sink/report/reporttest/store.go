package reporttest

import (
	"context"
	"fmt"
	"net/http"
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

// StoreInES sets up streams and indices unique to the test on the test
// ground's Elasticsearch, as `kubesift setup es` does, writes the
// documents docs returns for that configuration with the processor's
// Writer, and deletes it all when the test ends.
func StoreInES(t *testing.T, docs func(config.ElasticsearchConfig) []sink.Doc) (*esink.Client, config.ElasticsearchConfig) {
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
	t.Cleanup(func() { DropES(es, cfg) })
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

// DropES deletes what StoreInES set up.
func DropES(es *esink.Client, cfg config.ElasticsearchConfig) {
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

// StoreDigestScenario stores DigestScenario's day of cluster, ending at
// end, with StoreInES, and returns the figures its digest must show.
func StoreDigestScenario(t *testing.T, cluster string, end time.Time) (*esink.Client, config.ElasticsearchConfig, DigestFigures) {
	t.Helper()
	var want DigestFigures
	es, cfg := StoreInES(t, func(c config.ElasticsearchConfig) []sink.Doc {
		docs, f := DigestScenario(t, c, cluster, end)
		want = f
		return docs
	})
	return es, cfg, want
}
