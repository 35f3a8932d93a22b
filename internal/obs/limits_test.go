package obs

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
)

// TestIdleConnectionsStayBounded: twice the connection cap of clients that
// connect and then say nothing, or make one request and keep the
// connection idle, hold at most the cap of the metrics server's goroutines
// and descriptors; the connections over the cap are closed at once and
// counted; every idle one is closed after ReadHeaderTimeout or
// IdleTimeout; and a new client then gets /healthz.
func TestIdleConnectionsStayBounded(t *testing.T) {
	const capN, keepAlive, silent = 20, 10, 30 // 2 x cap connections
	s := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.Limits = Limits{ReadHeaderTimeout: 3 * time.Second, ReadTimeout: 3 * time.Second, WriteTimeout: 3 * time.Second, IdleTimeout: 3 * time.Second}
	// The metrics are read beside the server under test, whose slots the
	// idle clients hold.
	side := httptest.NewServer(promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{}))
	defer side.Close()
	metric := func(name string) float64 {
		m, err := testenv.Metrics(context.Background(), strings.TrimPrefix(side.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		return testenv.Sum(m, name, `listener="metrics"`)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, config.ServerConfig{MaxConnections: capN}) }()
	defer func() { cancel(); <-done }()
	addr := ln.Addr().String()
	healthz := func() bool {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
		res, err := c.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}
	testenv.WaitFor(t, "the server to answer", 10*time.Second, healthz)
	runtime.GC()
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range keepAlive + silent {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if i < keepAlive {
			// One request; the connection then stays open, idle.
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}
	testenv.WaitFor(t, "the connections over the cap to be refused", 10*time.Second, func() bool {
		return metric("kubesift_listener_connections_refused_total") == keepAlive+silent-capN
	})
	if got := metric("kubesift_listener_connections_open"); got > capN {
		t.Errorf("open connections %v, cap %d", got, capN)
	}
	// The server holds one goroutine and one descriptor per connection it
	// keeps; the test's own side of each connection is a descriptor too.
	t.Logf("%d idle connections, cap %d: %+d goroutines, %+d descriptors", keepAlive+silent, capN, runtime.NumGoroutine()-goroutines, openFDs(t)-fds)
	if d := runtime.NumGoroutine() - goroutines; d > capN+5 {
		t.Errorf("%d more goroutines for %d idle connections, cap %d", d, keepAlive+silent, capN)
	}
	if fds >= 0 {
		if d := openFDs(t) - fds; d > keepAlive+silent+capN+5 {
			t.Errorf("%d more descriptors for %d idle connections (their client side included), cap %d", d, keepAlive+silent, capN)
		}
	}
	// Every idle connection is closed by the server: the client reads EOF.
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection %d (keep-alive %v) not closed by the server: %v", i, i < keepAlive, err)
		}
	}
	testenv.WaitFor(t, "the slots to be given back", 10*time.Second, func() bool {
		return metric("kubesift_listener_connections_open") == 0
	})
	if !healthz() {
		t.Error("a new client gets no /healthz after the idle connections were closed")
	}
}

// openFDs counts this process's open descriptors; -1 where /proc is not.
func openFDs(t *testing.T) int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Logf("descriptors not counted: %v", err)
		return -1
	}
	return len(es)
}
