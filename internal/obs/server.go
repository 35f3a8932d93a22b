package obs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/tlsfiles"
)

// Server serves metrics and health endpoints.
type Server struct {
	Registry *prometheus.Registry
	// Limits are the listener's timeouts and connection cap; New sets
	// MetricsLimits, and server.max_connections overrides the cap.
	Limits Limits

	log    *slog.Logger
	mu     sync.Mutex
	checks map[string]error // name -> nil when ready
}

// New returns a Server with a fresh registry holding the Go and process
// collectors.
func New(log *slog.Logger) *Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Server{Registry: reg, Limits: MetricsLimits, log: log, checks: map[string]error{}}
}

// SetReady records the state of one readiness check. A check that was never
// set does not exist; register it early with a non-nil error so /readyz is
// false until the component says otherwise.
func (s *Server) SetReady(name string, err error) {
	s.mu.Lock()
	s.checks[name] = err
	s.mu.Unlock()
}

// Handler returns the mux with all endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{Registry: s.Registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		names := make([]string, 0, len(s.checks))
		for n := range s.checks {
			names = append(names, n)
		}
		sort.Strings(names)
		ready := true
		var body []byte
		for _, n := range names {
			if err := s.checks[n]; err != nil {
				ready = false
				body = fmt.Appendf(body, "[-] %s: %v\n", n, err)
			} else {
				body = fmt.Appendf(body, "[+] %s\n", n)
			}
		}
		s.mu.Unlock()
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		w.Write(body)
	})
	return mux
}

// Run serves per c on c.Listen until ctx ends, then shuts down gracefully.
// It returns once the listener is closed; a listen error is returned at
// once.
func (s *Server) Run(ctx context.Context, c config.ServerConfig) error {
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("metrics server: %w", err)
	}
	return s.Serve(ctx, ln, c)
}

// Serve is Run on an existing listener (c.Listen is not used). The server
// has s.Limits (c.MaxConnections overriding the cap). With
// c.BearerToken, /metrics requires it; /healthz and /readyz stay open
// because the kubelet's probes carry no token. With
// c.TLSCertFile it serves HTTPS, re-reading the certificate when renewed.
func (s *Server) Serve(ctx context.Context, ln net.Listener, c config.ServerConfig) error {
	defer ln.Close()
	limits := s.Limits.WithMax(c.MaxConnections)
	h, err := s.handler(c.BearerToken)
	if err != nil {
		return err
	}
	srv := limits.Server(h)
	if c.TLSCertFile != "" {
		cert, err := tlsfiles.Load(c.TLSCertFile, c.TLSKeyFile, tlsfiles.Options{Field: "server.tls_cert_file/tls_key_file", Log: s.log})
		if err != nil {
			return err
		}
		if err := Register(s.Registry, cert.Collectors("metrics")...); err != nil {
			return fmt.Errorf("metrics server: %w", err)
		}
		srv.TLSConfig = &tls.Config{GetCertificate: cert.GetCertificate, MinVersion: tls.VersionTLS12}
	}
	if ln, err = limits.Wrap(ln, "metrics", s.Registry, s.log); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	s.log.Info("serving metrics and health", "addr", ln.Addr().String(), "tls", srv.TLSConfig != nil, "bearer_token", c.BearerToken != "")
	if srv.TLSConfig != nil {
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// handler is Handler with /metrics behind token when it is set.
func (s *Server) handler(token config.Secret) (http.Handler, error) {
	h := s.Handler()
	if token == "" {
		return h, nil
	}
	metrics, err := NewToken(string(token)).RequireToken(h, "metrics", "kubesift-metrics", s.Registry, s.log)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.Handle("/metrics", metrics)
	return mux, nil
}
