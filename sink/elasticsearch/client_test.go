package elasticsearch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/kubesift/kubesift/internal/config"
)

// authServer is a TLS Elasticsearch stand-in that records the
// Authorization header it receives.
func authServer(t *testing.T) (*httptest.Server, func() string) {
	var mu sync.Mutex
	var auth string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = r.Header.Get("Authorization")
		mu.Unlock()
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Write([]byte(`{}`))
	}))
	t.Cleanup(srv.Close)
	return srv, func() string { mu.Lock(); defer mu.Unlock(); return auth }
}

func TestNewClientAuthAndTLS(t *testing.T) {
	srv, lastAuth := authServer(t)
	cert := srv.Certificate()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)
	sum := sha256.Sum256(cert.Raw)
	fp := hex.EncodeToString(sum[:])
	colons := strings.ToUpper(fp[:2]) + ":" + fp[2:] // case and colons as ES prints them are accepted

	tests := []struct {
		name     string
		mod      func(c *config.ElasticsearchConfig)
		wantErr  string
		wantAuth string
	}{
		{"untrusted certificate fails", func(c *config.ElasticsearchConfig) {}, "certificate", ""},
		{"ca file", func(c *config.ElasticsearchConfig) { c.CAFile = caFile }, "", ""},
		{"fingerprint", func(c *config.ElasticsearchConfig) { c.CAFingerprint = colons }, "", ""},
		{"wrong fingerprint fails", func(c *config.ElasticsearchConfig) { c.CAFingerprint = strings.Repeat("ab", 32) }, "fingerprint mismatch", ""},
		{"insecure skip verify", func(c *config.ElasticsearchConfig) { c.TLS.InsecureSkipVerify = true }, "", ""},
		{"basic auth", func(c *config.ElasticsearchConfig) { c.CAFile = caFile; c.Username = "u"; c.Password = "p" }, "", "Basic dTpw"},
		{"api key", func(c *config.ElasticsearchConfig) { c.CAFile = caFile; c.APIKey = "a2V5" }, "", "APIKey a2V5"},
		{"bearer token", func(c *config.ElasticsearchConfig) { c.CAFile = caFile; c.BearerToken = "tok" }, "", "Bearer tok"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default().Sink.Elasticsearch
			cfg.Addresses = []string{srv.URL}
			tc.mod(&cfg)
			es, err := NewClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			status, _, _, err := Call(context.Background(), es, http.MethodGet, "/", nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || status != 200 {
				t.Fatalf("status %d err %v", status, err)
			}
			if got := lastAuth(); got != tc.wantAuth {
				t.Errorf("Authorization = %q, want %q", got, tc.wantAuth)
			}
		})
	}
}

func TestNewClientBadCAFile(t *testing.T) {
	cfg := config.Default().Sink.Elasticsearch
	cfg.CAFile = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := NewClient(cfg); err == nil || !strings.Contains(err.Error(), "sink.elasticsearch.ca_file") {
		t.Errorf("err = %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(junk, []byte("not pem"), 0o644)
	cfg.CAFile = junk
	if _, err := NewClient(cfg); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("err = %v", err)
	}
}

// TestClientKeepsProductCheckAndHeaders checks what go-elasticsearch's root
// package did and Client does in its place: refuse answers until a
// successful one carries X-Elastic-Product: Elasticsearch (errors pass, so
// a 401 is still reported as a 401), then stop checking; and send the
// client's User-Agent and x-elastic-client-meta headers, and the
// compatibility media type under ELASTIC_CLIENT_APIVERSIONING=true.
func TestClientKeepsProductCheckAndHeaders(t *testing.T) {
	type answer struct {
		status  int
		product string
	}
	for _, tc := range []struct {
		name    string
		answers []answer
		refused []bool // per request
		compat  bool
	}{
		{name: "not Elasticsearch", answers: []answer{{200, ""}, {200, ""}}, refused: []bool{true, true}},
		{name: "another product", answers: []answer{{200, "OpenSearch"}}, refused: []bool{true}},
		{name: "checked once", answers: []answer{{200, "Elasticsearch"}, {200, ""}}, refused: []bool{false, false}},
		{name: "errors are not checked", answers: []answer{{401, ""}, {200, "Elasticsearch"}}, refused: []bool{false, false}},
		{name: "compatibility mode", answers: []answer{{200, "Elasticsearch"}}, refused: []bool{false}, compat: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.compat {
				t.Setenv("ELASTIC_CLIENT_APIVERSIONING", "true")
			}
			var mu sync.Mutex
			var n int
			var hdr []http.Header
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				a := tc.answers[n]
				n++
				hdr = append(hdr, r.Header.Clone())
				mu.Unlock()
				if a.product != "" {
					w.Header().Set("X-Elastic-Product", a.product)
				}
				w.WriteHeader(a.status)
				w.Write([]byte(`{}`))
			}))
			defer srv.Close()
			es, err := NewClient(config.ElasticsearchConfig{Addresses: []string{srv.URL}})
			if err != nil {
				t.Fatal(err)
			}
			for i, refused := range tc.refused {
				res, err := es.Info(es.Info.WithContext(context.Background()))
				if refused {
					if err == nil || !strings.Contains(err.Error(), "not Elasticsearch") {
						t.Fatalf("request %d: err %v, want the product check's refusal", i, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				res.Body.Close()
				if res.StatusCode != tc.answers[i].status {
					t.Fatalf("request %d: status %d, want %d", i, res.StatusCode, tc.answers[i].status)
				}
			}
			for i, h := range hdr {
				if ua := h.Get("User-Agent"); !strings.HasPrefix(ua, "go-elasticsearch/") {
					t.Errorf("request %d: User-Agent %q", i, ua)
				}
				if m := h.Get("X-Elastic-Client-Meta"); !strings.HasPrefix(m, "es=") || !strings.Contains(m, ",t=") {
					t.Errorf("request %d: X-Elastic-Client-Meta %q", i, m)
				}
				if got, want := h.Get("Accept") == compatibleWith8, tc.compat; got != want {
					t.Errorf("request %d: Accept %q (compatibility mode %v)", i, h.Get("Accept"), tc.compat)
				}
			}
		})
	}
}

// TestClientHeadersAsGoElasticsearch sends the same request through Client
// and through go-elasticsearch's own client built from the same settings,
// and fails on any difference in the headers the root package is
// responsible for: a header Client stops sending, or one whose value drifts
// from the library's (after an upgrade of either module, say).
func TestClientHeadersAsGoElasticsearch(t *testing.T) {
	compared := []string{"Authorization", "User-Agent", "X-Elastic-Client-Meta", "Accept", "Content-Type"}
	for _, tc := range []struct {
		name   string
		ours   config.ElasticsearchConfig
		theirs elasticsearch.Config
		compat bool
	}{
		{name: "no auth"},
		{name: "basic auth", ours: config.ElasticsearchConfig{Username: "u", Password: "p"},
			theirs: elasticsearch.Config{Username: "u", Password: "p"}},
		{name: "api key", ours: config.ElasticsearchConfig{APIKey: "a2V5"}, theirs: elasticsearch.Config{APIKey: "a2V5"}},
		{name: "bearer token", ours: config.ElasticsearchConfig{BearerToken: "tok"}, theirs: elasticsearch.Config{ServiceToken: "tok"}},
		{name: "compatibility mode", compat: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.compat {
				t.Setenv("ELASTIC_CLIENT_APIVERSIONING", "true")
			}
			var mu sync.Mutex
			var got []http.Header
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				got = append(got, r.Header.Clone())
				mu.Unlock()
				w.Header().Set("X-Elastic-Product", "Elasticsearch")
				w.Write([]byte(`{}`))
			}))
			defer srv.Close()
			tc.ours.Addresses = []string{srv.URL}
			ours, err := NewClient(tc.ours)
			if err != nil {
				t.Fatal(err)
			}
			tc.theirs.Addresses = []string{srv.URL}
			theirs, err := elasticsearch.NewClient(tc.theirs)
			if err != nil {
				t.Fatal(err)
			}
			for _, tp := range []esapi.Transport{theirs, ours} {
				req := esapi.IndexRequest{Index: "i", Body: strings.NewReader(`{"a":1}`)}
				res, err := req.Do(context.Background(), tp)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
			}
			if len(got) != 2 {
				t.Fatalf("server saw %d requests, want 2", len(got))
			}
			for _, h := range compared {
				if want, have := got[0].Values(h), got[1].Values(h); !slices.Equal(want, have) {
					t.Errorf("%s = %q, go-elasticsearch sends %q", h, have, want)
				}
			}
			if tc.compat && got[1].Get("Accept") != compatibleWith8 {
				t.Errorf("Accept = %q in compatibility mode", got[1].Get("Accept"))
			}
		})
	}
}
