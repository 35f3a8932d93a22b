package obs

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limits bound what one client can hold of a kubesift HTTP listener. Every
// connection costs a goroutine and a file descriptor until net/http closes
// it, and without timeouts a client that opens connections and sends
// nothing (or sends slowly, or never reads the answer) keeps them forever:
// thousands of idle keep-alive connections exhaust the process's
// descriptors, and then the kubelet's probes fail too.
//
// Build a listener's server with Server and its listener with Wrap:
//
//	srv := obs.MetricsLimits.Server(handler)
//	ln, err := obs.MetricsLimits.Wrap(ln, "metrics", reg, log)
//	srv.Serve(ln)
type Limits struct {
	// ReadHeaderTimeout closes a connection whose request headers have not
	// all arrived in time; it also bounds how long a new connection may
	// stay silent before its first request.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration
	// WriteTimeout bounds the time from the end of the request headers to
	// the end of the answer, so it includes the handler's work.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that waits this long for
	// its next request.
	IdleTimeout time.Duration
	// MaxConnections caps the open connections; 0 means no cap. A
	// connection over the cap is closed as soon as it is accepted, not
	// queued: a queued connection still holds its descriptor, which is
	// what runs out. Clients see a closed connection and retry; the
	// connections already open make room within IdleTimeout or
	// ReadHeaderTimeout.
	MaxConnections int
}

// The defaults of each kind of listener.
var (
	// MetricsLimits: a scrape or a probe is one small GET. IdleTimeout is
	// longer than the usual 1m scrape interval so that Prometheus keeps
	// its connection; WriteTimeout leaves time to write a large registry
	// to a slow scraper. 64 connections are many scrapers and probes.
	MetricsLimits = Limits{ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 90 * time.Second, MaxConnections: 64}
	// SilenceAPILimits: people and scripts, a few at a time. A handler
	// waits for the silence store, whose calls retry for up to about 30s,
	// and then refreshes the cache; WriteTimeout covers both twice.
	SilenceAPILimits = Limits{ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 2 * time.Minute, IdleTimeout: time.Minute, MaxConnections: 32}
	// AuditWebhookLimits: a kube-apiserver posts batches of up to
	// max_body_bytes over few long-lived connections, each API server
	// replica with its own; a batch over a slow link must still fit in
	// ReadTimeout.
	AuditWebhookLimits = Limits{ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute,
		WriteTimeout: 3 * time.Minute, IdleTimeout: 2 * time.Minute, MaxConnections: 256}
)

// WithMax returns l with MaxConnections n, or l when n is 0 (a
// configuration field left at its default).
func (l Limits) WithMax(n int) Limits {
	if n > 0 {
		l.MaxConnections = n
	}
	return l
}

// Server returns an http.Server for h with l's timeouts.
func (l Limits) Server(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: l.ReadHeaderTimeout, ReadTimeout: l.ReadTimeout,
		WriteTimeout: l.WriteTimeout, IdleTimeout: l.IdleTimeout}
}

// Wrap caps ln at l.MaxConnections open connections (ln itself when there
// is no cap). It registers with reg, labelled listener=name:
// kubesift_listener_connections_open and
// kubesift_listener_connections_refused_total (connections closed at once
// because the cap was reached). A refusal is logged at most once per
// LogInterval.
func (l Limits) Wrap(ln net.Listener, name string, reg prometheus.Registerer, log *slog.Logger) (net.Listener, error) {
	if l.MaxConnections <= 0 {
		return ln, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	labels := prometheus.Labels{"listener": name}
	cl := &capListener{Listener: ln, max: int64(l.MaxConnections), name: name, log: log,
		open: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kubesift_listener_connections_open", ConstLabels: labels,
			Help: "Connections open on the listener."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "kubesift_listener_connections_refused_total", ConstLabels: labels,
			Help: "Connections closed as soon as accepted because the listener had max_connections open."}),
	}
	if err := Register(reg, cl.open, cl.refused); err != nil {
		return nil, fmt.Errorf("listener %s: register metrics: %w", name, err)
	}
	return cl, nil
}

// capListener is the listener Wrap returns.
type capListener struct {
	net.Listener
	max      int64
	n        atomic.Int64
	name     string
	log      *slog.Logger
	logLimit LogLimiter
	open     prometheus.Gauge
	refused  prometheus.Counter
}

// Accept returns the next connection under the cap, closing those over it.
func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.n.Add(1) > l.max {
			l.n.Add(-1)
			remote := c.RemoteAddr().String()
			_ = c.Close()
			l.refused.Inc()
			l.logLimit.Warn(l.log, "cap", "listener at max_connections; closing new connections at once",
				"listener", l.name, "max_connections", l.max, "remote", remote)
			continue
		}
		l.open.Inc()
		return &cappedConn{Conn: c, l: l}, nil
	}
}

// cappedConn gives its slot back when it is closed, once: net/http and
// crypto/tls may both close it.
type cappedConn struct {
	net.Conn
	l    *capListener
	once sync.Once
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.n.Add(-1)
		c.l.open.Dec()
	})
	return err
}
