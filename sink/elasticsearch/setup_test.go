package elasticsearch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/sink"
)

// setupServer answers setup requests: ilm is the status of PUT _ilm/policy,
// exists makes data streams and the alerts index already exist.
type setupServer struct {
	mu     sync.Mutex
	ilm    int
	exists bool
	fail   map[string]int // path prefix -> status
	seen   map[string]map[string]any
	order  []string
}

func (s *setupServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	b, _ := io.ReadAll(r.Body)
	var body map[string]any
	json.Unmarshal(b, &body)
	s.mu.Lock()
	key := r.Method + " " + r.URL.Path
	s.seen[key] = body
	s.order = append(s.order, key)
	fail := 0
	for p, st := range s.fail {
		if strings.HasPrefix(r.URL.Path, p) {
			fail = st
		}
	}
	s.mu.Unlock()
	switch {
	case fail != 0:
		w.WriteHeader(fail)
		w.Write([]byte(`{"error":{"type":"illegal_argument_exception","reason":"refused on purpose"}}`))
	case strings.HasPrefix(r.URL.Path, "/_ilm/"):
		w.WriteHeader(s.ilm)
		w.Write([]byte(`{"error":{"type":"security_exception","reason":"no"}}`))
	case s.exists && r.Method == http.MethodPut && (strings.HasPrefix(r.URL.Path, "/_data_stream/") || r.URL.Path == "/alerts" || r.URL.Path == "/findings"):
		w.WriteHeader(400)
		w.Write([]byte(`{"error":{"type":"resource_already_exists_exception","reason":"exists"}}`))
	default:
		w.Write([]byte(`{"acknowledged":true}`))
	}
}

func runSetup(t *testing.T, s *setupServer) error {
	t.Helper()
	s.seen = map[string]map[string]any{}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	cfg := config.Default().Sink.Elasticsearch
	cfg.Addresses = []string{srv.URL}
	cfg.AlertsIndex = "alerts"
	cfg.Findings.Index = "findings"
	cfg.ILM.DeleteAfter = 400 * 24 * time.Hour
	es, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return Setup(context.Background(), es, cfg, nil)
}

func TestSetupWithILM(t *testing.T) {
	s := &setupServer{ilm: 200}
	if err := runSetup(t, s); err != nil {
		t.Fatal(err)
	}
	pol := s.seen["PUT /_ilm/policy/kubesift"]["policy"].(map[string]any)["phases"].(map[string]any)
	rollover := pol["hot"].(map[string]any)["actions"].(map[string]any)["rollover"].(map[string]any)
	if rollover["max_age"] != "7d" || rollover["max_primary_shard_size"] != "50gb" {
		t.Errorf("rollover = %v", rollover)
	}
	if pol["delete"].(map[string]any)["min_age"] != "400d" {
		t.Errorf("delete phase = %v", pol["delete"])
	}
	tmpl := s.seen["PUT /_index_template/kubesift-"+config.DefaultAuditStream]
	if tmpl == nil {
		t.Fatalf("no audit index template; requests: %v", s.order)
	}
	settings := tmpl["template"].(map[string]any)["settings"].(map[string]any)
	if settings["index.lifecycle.name"] != "kubesift" {
		t.Errorf("template settings = %v", settings)
	}
	if tmpl["priority"] != float64(TemplatePriority) || tmpl["data_stream"] == nil {
		t.Errorf("template = %v", tmpl)
	}
	if got := tmpl["index_patterns"].([]any); len(got) != 1 || got[0] != config.DefaultAuditStream {
		t.Errorf("index_patterns = %v", got)
	}
	// The policy comes before the templates that name it.
	if s.order[0] != "PUT /_ilm/policy/kubesift" {
		t.Errorf("first request %s", s.order[0])
	}
}

func TestSetupWithoutILMOmitsTheLifecycle(t *testing.T) {
	s := &setupServer{ilm: 400}
	if err := runSetup(t, s); err != nil {
		t.Fatal(err)
	}
	settings := s.seen["PUT /_index_template/kubesift-"+config.DefaultAuditStream]["template"].(map[string]any)["settings"].(map[string]any)
	if _, ok := settings["index.lifecycle.name"]; ok {
		t.Errorf("lifecycle set on a cluster without ILM: %v", settings)
	}
}

func TestSetupILMForbiddenIsAnError(t *testing.T) {
	err := runSetup(t, &setupServer{ilm: 403})
	if err == nil || !strings.Contains(err.Error(), "manage_ilm") || !strings.Contains(err.Error(), "HTTP 403") {
		t.Errorf("err = %v", err)
	}
}

func TestSetupExistingStreamsGetTheirMappingUpdated(t *testing.T) {
	s := &setupServer{ilm: 200, exists: true}
	if err := runSetup(t, s); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"PUT /" + config.DefaultAuditStream + "/_mapping", "PUT /alerts/_mapping",
		"PUT /findings/_mapping", "PUT /" + config.DefaultFindingTransitionsStream + "/_mapping"} {
		m, ok := s.seen[p]
		if !ok || m["properties"] == nil {
			t.Errorf("%s: %v", p, m)
		}
		if _, dt := m["dynamic_templates"]; dt {
			t.Errorf("%s replaces the dynamic templates", p)
		}
	}
}

func TestSetupErrorsNameWhatWasRefused(t *testing.T) {
	for path, want := range map[string]string{
		"/_component_template/kubesift-audit": "put component template kubesift-audit@mappings: HTTP 400 Bad Request: illegal_argument_exception: refused on purpose",
		"/_index_template/kubesift-alerts":    "put index template kubesift-alerts: HTTP 400",
		"/_data_stream/":                      "create data stream " + config.DefaultAuditStream + ": HTTP 400",
	} {
		err := runSetup(t, &setupServer{ilm: 200, fail: map[string]int{path: 400}})
		var se *sink.StatusError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", path, err, want)
		}
	}
}

func TestSetupRetriesServerErrors(t *testing.T) {
	old := setupBackoff
	setupBackoff = backoff.Policy{Initial: time.Millisecond, Max: time.Millisecond, Attempts: 3}
	t.Cleanup(func() { setupBackoff = old })
	err := runSetup(t, &setupServer{ilm: 200, fail: map[string]int{"/_component_template/": 503}})
	if !errors.Is(err, sink.ErrGaveUp) || !strings.Contains(err.Error(), "HTTP 503") {
		t.Errorf("err = %v", err)
	}
}

func TestSetupInstallsFindings(t *testing.T) {
	s := &setupServer{ilm: 200}
	if err := runSetup(t, s); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{ComponentFindings, ComponentScores} {
		if s.seen["PUT /_component_template/"+c] == nil {
			t.Errorf("component template %s not installed", c)
		}
	}
	tests := []struct {
		target, component string
		stream            bool
	}{
		{config.DefaultFindingTransitionsStream, ComponentFindings, true},
		{config.DefaultPostureScoresStream, ComponentScores, true},
		{"findings", ComponentFindings, false},
	}
	for _, tc := range tests {
		tmpl := s.seen["PUT /_index_template/"+IndexTemplateName(tc.target)]
		if tmpl == nil {
			t.Errorf("%s: no index template; requests: %v", tc.target, s.order)
			continue
		}
		if got := fmt.Sprint(tmpl["composed_of"]); got != fmt.Sprint([]string{ComponentECS, tc.component}) {
			t.Errorf("%s: composed_of %s", tc.target, got)
		}
		if _, isStream := tmpl["data_stream"]; isStream != tc.stream {
			t.Errorf("%s: data stream %v, want %v", tc.target, isStream, tc.stream)
		}
		if tc.stream {
			// Streams roll over and expire like the record streams.
			settings := tmpl["template"].(map[string]any)["settings"].(map[string]any)
			if settings["index.lifecycle.name"] != "kubesift" {
				t.Errorf("%s: settings %v", tc.target, settings)
			}
			if _, ok := s.seen["PUT /_data_stream/"+tc.target]; !ok {
				t.Errorf("%s: data stream not created", tc.target)
			}
		} else if _, ok := s.seen["PUT /"+tc.target]; !ok {
			t.Errorf("%s: index not created", tc.target)
		}
	}
}

func TestAlreadyExists(t *testing.T) {
	exists := []byte(`{"error":{"type":"resource_already_exists_exception","reason":"index [x] already exists"},"status":400}`)
	for _, tc := range []struct {
		name   string
		status int
		body   []byte
		want   bool
	}{
		{"exists", 400, exists, true},
		{"another 400", 400, []byte(`{"error":{"type":"invalid_index_name_exception"},"status":400}`), false},
		{"exists, other status", 500, exists, false},
		{"not JSON", 400, []byte("bad request"), false},
	} {
		if got := AlreadyExists(tc.status, tc.body); got != tc.want {
			t.Errorf("%s: AlreadyExists = %v, want %v", tc.name, got, tc.want)
		}
	}
}
