package kibana

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/kibana/kibanatest"
)

const (
	testPassword = "s3cret-pass"
	testAPIKey   = "dGVzdDprZXk="
)

func importInto(t *testing.T, srv *kibanatest.Server, opts ImportOptions) (ImportResult, error) {
	t.Helper()
	opts.URL = srv.URL
	im, err := NewImporter(opts)
	if err != nil {
		t.Fatal(err)
	}
	im.Backoff = backoff.Policy{Initial: time.Millisecond, Max: 5 * time.Millisecond, Attempts: 4}
	ndjson, err := Generate(config.Default().Sink.Elasticsearch)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return im.Import(ctx, ndjson)
}

// TestImportIdempotent: the first import creates every object, the second
// replaces the same ones (overwrite=true, fixed ids), in the space asked.
func TestImportIdempotent(t *testing.T) {
	for _, c := range []struct {
		name, space, stored string
		opts                ImportOptions
	}{
		{"default space, basic auth", "", "default", ImportOptions{Username: "elastic", Password: testPassword}},
		{"named space, API key", "security", "security", ImportOptions{APIKey: testAPIKey}},
		{"explicit default space", "default", "default", ImportOptions{APIKey: testAPIKey}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := kibanatest.New(t)
			srv.Username, srv.Password, srv.APIKey = "elastic", testPassword, testAPIKey
			srv.Spaces = []string{"security"}
			c.opts.Space = c.space
			objs, _ := Objects(config.Default().Sink.Elasticsearch)
			for run, wantCreated := range []int{len(objs), 0} {
				res, err := importInto(t, srv, c.opts)
				if err != nil {
					t.Fatalf("run %d: %v", run+1, err)
				}
				if len(res.Created) != wantCreated || len(res.Created)+len(res.Replaced) != len(objs) {
					t.Fatalf("run %d: %d created, %d replaced; want %d created of %d", run+1, len(res.Created), len(res.Replaced), wantCreated, len(objs))
				}
			}
			if got := len(srv.Objects(c.stored)); got != len(objs) {
				t.Fatalf("space %s holds %d objects, want %d", c.stored, got, len(objs))
			}
		})
	}
}

// TestImportRefused: each refusal Kibana can answer is an error that says
// what to check, is not retried (except 503), and never carries the
// credentials.
func TestImportRefused(t *testing.T) {
	for _, c := range []struct {
		name     string
		setup    func(*kibanatest.Server)
		opts     ImportOptions
		status   int
		want     string
		requests int
	}{
		{"wrong password", nil, ImportOptions{Username: "elastic", Password: "wrong-" + testPassword}, 401, "check --username/--password or --api-key", 1},
		{"wrong API key", nil, ImportOptions{APIKey: "d3Jvbmc6a2V5"}, 401, "check --username/--password or --api-key", 1},
		{"no privilege", func(s *kibanatest.Server) { s.ReadOnlyUser = "viewer" }, ImportOptions{Username: "viewer", Password: testPassword}, 403, "saved-objects management privilege", 1},
		{"unknown space", nil, ImportOptions{APIKey: testAPIKey, Space: "nope"}, 404, `space "nope" does not exist`, 1},
		{"still starting", func(s *kibanatest.Server) { s.Unavailable = 10 }, ImportOptions{APIKey: testAPIKey}, 503, "Kibana server is not ready yet", 4},
		{"object from a newer Kibana", func(s *kibanatest.Server) { s.Reject = "dashboard/kubesift-dashboard-overview" }, ImportOptions{APIKey: testAPIKey}, 0,
			"dashboard kubesift-dashboard-overview: unknown (Document \"kubesift-dashboard-overview\" belongs to a more recent version", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := kibanatest.New(t)
			srv.Username, srv.Password, srv.APIKey = "elastic", testPassword, testAPIKey
			if c.setup != nil {
				c.setup(srv)
			}
			_, err := importInto(t, srv, c.opts)
			if err == nil {
				t.Fatal("import succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, c.want) {
				t.Errorf("error %q does not say %q", msg, c.want)
			}
			var se *sink.StatusError
			if c.status != 0 && (!errors.As(err, &se) || se.StatusCode != c.status) {
				t.Errorf("error %v: want HTTP %d", err, c.status)
			}
			for _, secret := range []string{testPassword, testAPIKey, "d3Jvbmc6a2V5"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error carries a credential: %q", msg)
				}
			}
			if got := srv.Requests(); got != c.requests {
				t.Errorf("%d requests, want %d", got, c.requests)
			}
		})
	}
}

// TestImportRetriesUntilKibanaIsUp: a Kibana answering 503 while it starts
// gets the import once it is ready.
func TestImportRetriesUntilKibanaIsUp(t *testing.T) {
	srv := kibanatest.New(t)
	srv.Unavailable = 2
	if _, err := importInto(t, srv, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := srv.Requests(); got != 3 {
		t.Fatalf("%d requests, want 3", got)
	}
}

// TestImportTLS: Kibana on HTTPS is reached with --ca-file; without it the
// certificate error is reported at once (not retried) with the hint.
func TestImportTLS(t *testing.T) {
	srv, ca := kibanatest.NewTLS(t)
	if _, err := importInto(t, srv, ImportOptions{CAFile: ca}); err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	_, err := importInto(t, srv, ImportOptions{})
	if err == nil || !strings.Contains(err.Error(), "--ca-file") {
		t.Fatalf("without the CA: %v, want a certificate error naming --ca-file", err)
	}
	if errors.Is(err, sink.ErrGaveUp) {
		t.Errorf("a certificate error was retried: %v", err)
	}
}

func TestNewImporterChecksOptions(t *testing.T) {
	for _, c := range []struct {
		name string
		opts ImportOptions
		want string
	}{
		{"no URL", ImportOptions{}, "is not an http(s) URL"},
		{"not http", ImportOptions{URL: "ftp://k:5601"}, "is not an http(s) URL"},
		{"credentials in URL", ImportOptions{URL: "http://u:" + testPassword + "@k:5601"}, "must not carry credentials"},
		{"user without password", ImportOptions{URL: "http://k:5601", Username: "u"}, "go together"},
		{"CA and insecure", ImportOptions{URL: "https://k:5601", CAFile: "ca.pem", InsecureSkipVerify: true}, "exclude each other"},
		{"space not an id", ImportOptions{URL: "http://k:5601", Space: "Sec Ops/x"}, "is not a space id"},
		{"missing CA file", ImportOptions{URL: "https://k:5601", CAFile: "/nonexistent/ca.pem"}, "--ca-file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewImporter(c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Errorf("error carries the password: %v", err)
			}
		})
	}
}

func TestImporterEndpoint(t *testing.T) {
	for _, c := range []struct{ url, space, want string }{
		{"http://k:5601", "", "http://k:5601/api/saved_objects/_import?overwrite=true"},
		{"http://k:5601/", "default", "http://k:5601/api/saved_objects/_import?overwrite=true"},
		{"https://k/kibana/", "sec-ops", "https://k/kibana/s/sec-ops/api/saved_objects/_import?overwrite=true"},
	} {
		im, err := NewImporter(ImportOptions{URL: c.url, Space: c.space})
		if err != nil {
			t.Fatal(err)
		}
		if im.Endpoint() != c.want {
			t.Errorf("%s %q: %s, want %s", c.url, c.space, im.Endpoint(), c.want)
		}
	}
}

// FuzzImportAnswer: any body Kibana (or something else at that URL) sends
// back decodes without panicking into a result or an error.
func FuzzImportAnswer(f *testing.F) {
	f.Add([]byte(`{"success":true,"successCount":1,"successResults":[{"type":"dashboard","id":"d","meta":{"title":"T"},"overwrite":true}]}`))
	f.Add([]byte(`{"success":false,"successCount":0,"errors":[{"type":"dashboard","id":"d","error":{"type":"missing_references","references":[{"type":"index-pattern","id":"x"}]}}]}`))
	f.Add([]byte(`{"statusCode":401,"error":"Unauthorized","message":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var a importAnswer
		if json.Unmarshal(b, &a) != nil {
			return
		}
		res, err := a.result()
		if err == nil && !a.Success {
			t.Fatalf("success false accepted: %+v", res)
		}
	})
}
