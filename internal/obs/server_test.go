package obs

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/kubesift/kubesift/internal/config"
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
