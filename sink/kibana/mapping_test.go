package kibana

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// TestFieldsInMapping (real Elasticsearch): every field a panel, control or
// data view format names exists in the indices `kubesift setup es`
// installs (the mapping alone: no document is written), and every field a
// panel or control aggregates is aggregatable there. A field renamed in
// sink/ecs fails here, naming the panel.
func TestFieldsInMapping(t *testing.T) {
	testenv.Short(t)
	esURL := strings.TrimRight(testenv.ElasticsearchURL(t), "/")
	ns := fmt.Sprint("kbfields", time.Now().UnixNano())
	cfg := config.Default().Sink.Elasticsearch
	cfg.Addresses = []string{esURL}
	cfg.ILM.Enabled = false
	cfg.Streams = config.ESStreamsConfig{Audit: "logs-kstest.audit-" + ns, Events: "logs-kstest.events-" + ns, Posture: "logs-kstest.posture-" + ns}
	cfg.AlertsIndex = "kstest-alerts-" + ns
	cfg.Findings = config.ESFindingsConfig{Index: "kstest-findings-" + ns,
		TransitionsStream: "logs-kstest.transitions-" + ns, ScoresStream: "metrics-kstest.scores-" + ns}
	streams := []string{cfg.Streams.Audit, cfg.Streams.Events, cfg.Streams.Posture, cfg.Findings.TransitionsStream, cfg.Findings.ScoresStream}
	t.Cleanup(func() {
		var paths []string
		for _, s := range streams {
			paths = append(paths, "/_data_stream/"+s, "/_index_template/"+elasticsearch.IndexTemplateName(s))
		}
		for _, i := range []string{cfg.AlertsIndex, cfg.Findings.Index} {
			paths = append(paths, "/"+i, "/_index_template/"+elasticsearch.IndexTemplateName(i))
		}
		for _, p := range paths {
			esDo(t, http.MethodDelete, esURL+p)
		}
	})
	es, err := elasticsearch.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := elasticsearch.Setup(ctx, es, cfg, nil); err != nil {
		t.Fatal(err)
	}

	views := Views(cfg)
	caps := map[string]map[string]fieldCap{} // index -> field -> caps
	uses := Fields()
	for _, u := range uses {
		for _, index := range strings.Split(views[u.View], ",") {
			if caps[index] == nil {
				caps[index] = fieldCaps(t, esURL, index)
			}
			c, ok := caps[index][u.Field]
			switch {
			case !ok:
				t.Errorf("%s: field %s is not in the mapping of %s", u.Where, u.Field, index)
			case u.Aggregated && !c.Aggregatable:
				t.Errorf("%s: field %s of %s is %s, which cannot be aggregated", u.Where, u.Field, index, c.Type)
			}
		}
	}
	t.Logf("%d field uses checked against %d indices", len(uses), len(caps))
}

type fieldCap struct {
	Type         string `json:"type"`
	Aggregatable bool   `json:"aggregatable"`
}

// fieldCaps returns the mapped fields of index: _field_caps reads the
// mapping, so an index without documents answers.
func fieldCaps(t *testing.T, esURL, index string) map[string]fieldCap {
	t.Helper()
	b := esDo(t, http.MethodGet, esURL+"/"+url.PathEscape(index)+"/_field_caps?fields=*")
	var res struct {
		Fields map[string]map[string]fieldCap `json:"fields"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("field caps of %s: %v: %s", index, err, b)
	}
	out := map[string]fieldCap{}
	for name, byType := range res.Fields {
		for _, c := range byType {
			if c.Type != "object" && c.Type != "nested" {
				out[name] = c
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("field caps of %s: no fields: %s", index, b)
	}
	return out
}

func esDo(t *testing.T, method, u string) []byte {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return b
}
