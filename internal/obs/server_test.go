package obs

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
)

func TestEndpoints(t *testing.T) {
	s := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx, ln, config.ServerConfig{}) }()
	base := "http://" + ln.Addr().String()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	s.SetReady("kafka", errors.New("dialing"))
	steps := []struct {
		name     string
		setup    func()
		path     string
		code     int
		contains string
	}{
		{"healthz", nil, "/healthz", 200, "ok"},
		{"not ready names the check", nil, "/readyz", 503, "[-] kafka: dialing"},
		{"ready", func() { s.SetReady("kafka", nil) }, "/readyz", 200, "[+] kafka"},
		{"metrics", nil, "/metrics", 200, "go_goroutines"},
	}
	for _, st := range steps {
		if st.setup != nil {
			st.setup()
		}
		code, body := get(st.path)
		if code != st.code || !strings.Contains(body, st.contains) {
			t.Errorf("%s: %d %q", st.name, code, body)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestMetricsTokenAndTLS: with a bearer token and a certificate, /metrics
// is served over HTTPS to a client with the token (its scheme in any case)
// and refused, counted, without it; /healthz and /readyz stay open for
// probes.
func TestMetricsTokenAndTLS(t *testing.T) {
	certFile, keyFile, pool := testenv.SelfSigned(t, t.TempDir())
	s := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Serve(ctx, ln, config.ServerConfig{BearerToken: "m-token", TLSCertFile: certFile, TLSKeyFile: keyFile})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	get := func(path, auth string) (int, http.Header, string) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+ln.Addr().String()+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header, string(b)
	}
	for _, tc := range []struct {
		path, auth string
		code       int
		contains   string
	}{
		{"/healthz", "", 200, "ok"},
		{"/readyz", "", 200, ""},
		{"/metrics", "", 401, "bearer token"},
		{"/metrics", "Bearer wrong", 401, "bearer token"},
		{"/metrics", "Basic bS10b2tlbg==", 401, "bearer token"},
		{"/metrics", "Bearer m-token", 200, "go_goroutines"},
		{"/metrics", "bearer m-token", 200, `kubesift_listener_auth_rejected_total{listener="metrics",reason="missing"} 2`},
		{"/metrics", "BEARER m-token", 200, `kubesift_listener_auth_rejected_total{listener="metrics",reason="wrong"} 1`},
		{"/nope", "", 404, ""},
	} {
		code, h, body := get(tc.path, tc.auth)
		if code != tc.code || !strings.Contains(body, tc.contains) {
			t.Errorf("%s with %q: %d %q", tc.path, tc.auth, code, body)
		}
		if code == 401 && h.Get("WWW-Authenticate") == "" {
			t.Errorf("%s with %q: no challenge", tc.path, tc.auth)
		}
	}
	// Plain HTTP is not served.
	res, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered on the TLS listener")
		}
	}
}
