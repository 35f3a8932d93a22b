// Package auditwebhook is the collector's receiver for kube-apiserver's audit
// webhook backend (--audit-webhook-config-file, batch or blocking mode): an
// HTTPS endpoint that accepts audit.k8s.io/v1 (or v1beta1) EventList POSTs.
//
// # Acknowledgement
//
// A request is answered 200 only after Publisher.Publish returned nil for
// every record of the batch and every dead letter of it is durable, so a
// record the API server saw acknowledged survives a crash of the collector.
// Otherwise the answer makes kube-apiserver retry the whole batch (its
// webhook client retries every error with exponential backoff, and honours
// Retry-After on 429/5xx): 429 with Retry-After when the publisher pushes
// back (collector.ErrBackpressure), max_in_flight requests are already
// being processed or max_inflight_bytes are held (see Intake), 503 with Retry-After while the receiver shuts down, 500
// on any other publisher error. Retries carry the same record IDs.
//
// # Authentication
//
// The API server authenticates with a client certificate signed by
// client_ca_file (mTLS), or with a bearer token, or either when both are
// configured. The TLS handshake requests a client certificate without
// verifying it, and the handler verifies the chain (x509, client-auth usage)
// itself: so a wrong certificate gets a 403 that is counted and logged
// instead of a handshake failure the client cannot interpret. Go's TLS stack
// still checks that the client holds the certificate's private key. With
// allowed_client_names set, the certificate must also carry a matching name
// (identity.go). client_ca_file is re-read when it changes. Bearer
// tokens are compared in constant time (SHA-256 digests, so the length does
// not leak either). No credentials: 401; wrong ones: 403.
//
// # Intake
//
// Memory and slots are bounded before any decoding (intake.go): bodies held
// by all connections together are capped by max_inflight_bytes (429 with
// Retry-After beyond it), a body must arrive within body_read_timeout (408),
// and only a request whose body is read takes one of max_in_flight
// processing slots (429 when none is free), so slow clients cannot hold the
// slots; bodies of 1 MiB or more may hold all but one of them. A body is
// then decoded item by item and published in bounded sub-batches
// (ingest.go): 200 still means every record and dead letter of the body is
// durable; a failure part-way makes the API server retry the whole batch,
// whose records carry the same IDs.
//
// # Bad input
//
// Bodies are capped at max_body_bytes (413, counted, and the first
// dead_letter_max_bytes go to the dead-letter topic). Items that do not
// decode become dead letters (redacted like records, see
// redact.ScrubDeadLetter) while the good items of the same batch are
// published; consecutive bad items are one dead letter holding all of them
// (up to dead_letter_max_bytes). The batch is acknowledged once both are
// durable.
//
// Records are handled in the request's goroutine (never one goroutine per
// record).
package auditwebhook

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/internal/tlsfiles"
	"github.com/kubesift/kubesift/record"
)

// Options are what a Receiver needs.
type Options struct {
	Config    config.AuditWebhookConfig
	Publisher collector.Publisher
	// Sanitizer redacts and size-caps records and dead letters; required.
	Sanitizer *redact.Sanitizer
	// Cluster is stamped on every record and dead letter.
	Cluster record.Cluster
	// DeadLetterMaxBytes caps the head of an oversized body kept as a dead
	// letter (collector.dead_letter_max_bytes).
	DeadLetterMaxBytes int
	// Registerer receives the metrics (nil: not exported).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now gives the observed time of records; time.Now when nil.
	Now func() time.Time
}

// Receiver serves the audit webhook endpoint.
type Receiver struct {
	cfg       config.AuditWebhookConfig
	pub       collector.Publisher
	san       *redact.Sanitizer
	cluster   record.Cluster
	log       *slog.Logger
	m         *metrics
	now       func() time.Time
	tlsConfig *tls.Config
	clientCAs *tlsfiles.CAPool // nil: mTLS not accepted
	names     []string         // allowed_client_names; empty: any name
	tokenHash *[32]byte        // nil: bearer tokens not accepted
	deadMax   int
	reg       prometheus.Registerer

	sem      chan struct{}
	largeSem chan struct{} // the slots bodies of smallBody or more may hold
	budget   *byteBudget
	draining atomic.Bool
	logLimit obs.LogLimiter
}

// New loads the serving certificate, the client CA and the token, and
// registers the metrics. Errors name the configuration field.
func New(o Options) (*Receiver, error) {
	if o.Publisher == nil || o.Sanitizer == nil {
		return nil, errors.New("audit webhook: Publisher and Sanitizer are required")
	}
	c := o.Config
	r := &Receiver{
		cfg:     c,
		pub:     o.Publisher,
		san:     o.Sanitizer,
		cluster: o.Cluster,
		log:     o.Logger,
		now:     o.Now,
		deadMax: o.DeadLetterMaxBytes,
		reg:     o.Registerer,
		sem:     make(chan struct{}, max(c.MaxInFlight, 1)),
		// One slot is kept for small bodies (takeSlot).
		largeSem: make(chan struct{}, max(c.MaxInFlight-1, 0)),
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.log = r.log.With("component", Source)
	if r.now == nil {
		r.now = time.Now
	}
	if r.deadMax <= 0 {
		r.deadMax = 64 << 10
	}
	if r.cfg.RetryAfter < time.Second {
		r.cfg.RetryAfter = time.Second
	}
	if r.cfg.MaxBodyBytes <= 0 {
		r.cfg.MaxBodyBytes = 32 << 20
	}
	if r.cfg.MaxInflightBytes <= 0 {
		r.cfg.MaxInflightBytes = config.DefaultWebhookInflightBytes
	}
	if r.cfg.BodyReadTimeout <= 0 {
		r.cfg.BodyReadTimeout = config.DefaultWebhookBodyReadTimeout
	}
	r.budget = &byteBudget{max: r.cfg.MaxInflightBytes}
	// Re-read when the files change: a renewed Secret is served without a
	// restart (the API server would refuse an expired certificate and,
	// its buffer full, drop audit events).
	cert, err := tlsfiles.Load(c.TLSCertFile, c.TLSKeyFile, tlsfiles.Options{
		Field: "collector.audit_webhook.tls_cert_file/tls_key_file", Log: r.log, Now: r.now})
	if err != nil {
		return nil, err
	}
	r.tlsConfig = &tls.Config{
		GetCertificate: cert.GetCertificate,
		MinVersion:     tls.VersionTLS12,
		ClientAuth:     tls.NoClientCert,
	}
	if c.ClientCAFile != "" {
		pool, err := tlsfiles.LoadCAPool(c.ClientCAFile, tlsfiles.Options{
			Field: "collector.audit_webhook.client_ca_file", Log: r.log, Now: r.now})
		if err != nil {
			return nil, err
		}
		r.clientCAs, r.names = pool, c.AllowedClientNames
		if len(r.names) == 0 {
			r.log.Warn("audit webhook: allowed_client_names is empty, so any client certificate client_ca_file signed may post audit events; list the API server's certificate names",
				"client_ca_file", c.ClientCAFile)
		}
		// Verified in the handler (see the package doc), so that a wrong
		// certificate is answered 403 and counted.
		r.tlsConfig.ClientAuth = tls.RequestClientCert
	}
	if c.BearerToken != "" {
		h := sha256.Sum256([]byte(c.BearerToken))
		r.tokenHash = &h
	}
	if r.clientCAs == nil && r.tokenHash == nil {
		return nil, errors.New("collector.audit_webhook: neither client_ca_file nor bearer_token is set; the API server could not authenticate")
	}
	if r.m, err = newMetrics(o.Registerer, r.budget.inUse); err != nil {
		return nil, err
	}
	collectors := cert.Collectors(Source)
	if r.clientCAs != nil {
		collectors = append(collectors, r.clientCAs.Collectors(Source)...)
	}
	if err := obs.Register(o.Registerer, collectors...); err != nil {
		return nil, fmt.Errorf("audit webhook: register metrics: %w", err)
	}
	return r, nil
}

// Run listens on the configured address and serves until ctx ends (see Serve).
func (r *Receiver) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", r.cfg.Listen)
	if err != nil {
		return fmt.Errorf("audit webhook: listen on %s: %w", r.cfg.Listen, err)
	}
	return r.Serve(ctx, ln)
}

// Serve serves HTTPS on ln until ctx ends. Then it answers new requests 503
// (so the API server retries them elsewhere or later), lets requests in
// flight finish for up to shutdown_grace, and returns. ln is closed.
func (r *Receiver) Serve(ctx context.Context, ln net.Listener) error {
	// The server's ReadTimeout bounds a whole request; its body has the
	// shorter body_read_timeout (intake.go).
	limits := obs.AuditWebhookLimits.WithMax(r.cfg.MaxConnections)
	srv := limits.Server(r)
	srv.TLSConfig = r.tlsConfig.Clone()
	srv.ErrorLog = log.New(&serverErrorLog{r: r}, "", 0)
	capped, err := limits.Wrap(ln, Source, r.reg, r.log)
	if err != nil {
		ln.Close()
		return fmt.Errorf("audit webhook: %w", err)
	}
	ln = capped
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		r.draining.Store(true)
		sctx, cancel := context.WithTimeout(context.Background(), r.cfg.ShutdownGrace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			r.log.Warn("requests still in flight at the end of the shutdown grace; closing them", "grace", r.cfg.ShutdownGrace)
			srv.Close()
		}
	}()
	r.log.Info("serving the audit webhook", "addr", ln.Addr().String(), "mtls", r.clientCAs != nil, "bearer_token", r.tokenHash != nil)
	err = srv.ServeTLS(ln, "", "")
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("audit webhook: %w", err)
}

// ServeHTTP handles one POST of an EventList.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	code := r.handle(w, req)
	r.m.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	r.m.duration.Observe(time.Since(start).Seconds())
}

// handle answers req and returns the status code sent.
func (r *Receiver) handle(w http.ResponseWriter, req *http.Request) int {
	if r.draining.Load() {
		return r.answer(w, http.StatusServiceUnavailable, "shutting down; retry later", true)
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return r.answer(w, http.StatusMethodNotAllowed, "POST an audit EventList", false)
	}
	if code := r.authenticate(req); code != 0 {
		r.m.rejected.WithLabelValues("auth").Inc()
		r.logLimit.Warn(r.log, "auth", "audit webhook request rejected: authentication failed", "remote", req.RemoteAddr, "status", code)
		if code == http.StatusUnauthorized && r.tokenHash != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="kubesift-audit"`)
		}
		return r.answer(w, code, http.StatusText(code), false)
	}
	if ce := req.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		r.m.rejected.WithLabelValues(collector.ReasonMalformed).Inc()
		return r.answer(w, http.StatusUnsupportedMediaType, "Content-Encoding "+ce+" is not supported", false)
	}
	ctx := req.Context()
	b, err := r.readBody(w, req)
	defer b.release()
	switch {
	case errors.Is(err, errOverBudget):
		r.m.rejected.WithLabelValues("budget").Inc()
		r.logLimit.Warn(r.log, "budget", "audit webhook at max_inflight_bytes; answering 429",
			"max_inflight_bytes", r.budget.max, "content_length", req.ContentLength)
		w.Header().Set("Connection", "close") // the unread body is not worth draining
		return r.answer(w, http.StatusTooManyRequests, "too many bytes in flight; retry later", true)
	case errors.Is(err, errTooLarge):
		return r.rejectTooLarge(ctx, w, req, b.data)
	case isTimeout(err):
		r.m.rejected.WithLabelValues("timeout").Inc()
		r.logLimit.Warn(r.log, "timeout", "audit webhook: request body not received within body_read_timeout",
			"remote", req.RemoteAddr, "body_read_timeout", r.cfg.BodyReadTimeout, "received", len(b.data), "content_length", req.ContentLength)
		w.Header().Set("Connection", "close")
		return r.answer(w, http.StatusRequestTimeout, "body not received in time", true)
	case err != nil:
		r.logLimit.Warn(r.log, "read", "audit webhook: reading the request body failed", "remote", req.RemoteAddr, "err", err)
		return r.answer(w, http.StatusBadRequest, "could not read the body", false)
	}

	// The slot is taken only now that the body is here: see intake.go.
	done, ok := r.takeSlot(len(b.data))
	if !ok {
		r.m.rejected.WithLabelValues("busy").Inc()
		r.logLimit.Warn(r.log, "busy", "audit webhook at max_in_flight; answering 429", "max_in_flight", cap(r.sem))
		return r.answer(w, http.StatusTooManyRequests, "too many requests in flight; retry later", true)
	}
	defer done()
	if what, err := r.ingest(ctx, b.data, req.RemoteAddr); err != nil {
		return r.publishFailed(w, req, err, what)
	}
	// Everything of the batch is durable: now, and only now, acknowledge.
	w.WriteHeader(http.StatusOK)
	return http.StatusOK
}

// rejectTooLarge answers 413 after making the head of the body a dead letter.
func (r *Receiver) rejectTooLarge(ctx context.Context, w http.ResponseWriter, req *http.Request, head []byte) int {
	r.m.rejected.WithLabelValues("size").Inc()
	r.logLimit.Warn(r.log, "size", "audit webhook request body over max_body_bytes; answering 413",
		"remote", req.RemoteAddr, "max_body_bytes", r.cfg.MaxBodyBytes, "content_length", req.ContentLength)
	dl := r.deadLetter(head, req.RemoteAddr, record.ReasonTooLarge,
		fmt.Sprintf("request body exceeds max_body_bytes (%d); dead letter of its first %d bytes, redacted", r.cfg.MaxBodyBytes, min(len(head), r.deadMax)))
	if err := r.pub.PublishDeadLetters(ctx, []collector.DeadLetter{dl}); err != nil {
		// The 413 stands either way; the API server gives up on the batch
		// after its retries, which the rejected counter shows.
		r.log.Warn("audit webhook: dead letter of an oversized request not published", "err", err)
	} else {
		r.m.deadLetters.WithLabelValues(dl.Reason).Inc()
	}
	return r.answer(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body exceeds %d bytes", r.cfg.MaxBodyBytes), false)
}

// publishFailed answers a failed Publish/PublishDeadLetters so the API server
// retries: 429 on backpressure (503 once shutting down), 503 when the request
// ended, 500 otherwise.
func (r *Receiver) publishFailed(w http.ResponseWriter, req *http.Request, err error, what string) int {
	switch {
	case errors.Is(err, collector.ErrBackpressure):
		r.logLimit.Warn(r.log, "backpressure", "audit webhook: publisher is full; answering 429", "what", what)
		if r.draining.Load() {
			return r.answer(w, http.StatusServiceUnavailable, "shutting down; retry later", true)
		}
		return r.answer(w, http.StatusTooManyRequests, "collector is full; retry later", true)
	case req.Context().Err() != nil:
		r.log.Warn("audit webhook: request ended before the batch was durable; the API server will retry", "what", what, "err", err)
		return r.answer(w, http.StatusServiceUnavailable, "not acknowledged; retry", true)
	default:
		r.logLimit.Warn(r.log, "publish", "audit webhook: publishing failed; answering 500", "what", what, "err", err)
		return r.answer(w, http.StatusInternalServerError, "publishing failed; retry later", true)
	}
}

func (r *Receiver) answer(w http.ResponseWriter, code int, msg string, retry bool) int {
	if retry {
		w.Header().Set("Retry-After", strconv.Itoa(int(r.cfg.RetryAfter/time.Second)))
	}
	if code >= 400 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(code)
		io.WriteString(w, msg+"\n")
		return code
	}
	w.WriteHeader(code)
	return code
}

// authenticate returns 0 when the request carries a valid client
// certificate (of client_ca_file, with an allowed name) or bearer token, 401
// when it carries none, 403 when the ones it carries are not valid.
func (r *Receiver) authenticate(req *http.Request) int {
	presented := false
	if r.clientCAs != nil && req.TLS != nil && len(req.TLS.PeerCertificates) > 0 {
		presented = true
		certs := req.TLS.PeerCertificates
		opts := x509.VerifyOptions{
			Roots:         r.clientCAs.Pool(),
			Intermediates: x509.NewCertPool(),
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		for _, c := range certs[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := certs[0].Verify(opts); err == nil && r.nameAllowed(req, certs[0]) {
			return 0
		}
	}
	if r.tokenHash != nil {
		if h := req.Header.Get("Authorization"); h != "" {
			presented = true
			if tok, ok := obs.BearerToken(h); ok {
				got := sha256.Sum256([]byte(tok))
				if subtle.ConstantTimeCompare(got[:], r.tokenHash[:]) == 1 {
					return 0
				}
			}
		}
	}
	if presented {
		return http.StatusForbidden
	}
	return http.StatusUnauthorized
}

func (r *Receiver) deadLetter(data []byte, remote, reason, msg string) collector.DeadLetter {
	return r.san.DeadLetter(collector.DeadLetter{
		Data:    data,
		Source:  Source,
		Origin:  remote,
		Offset:  -1,
		Reason:  reason,
		Error:   msg,
		Cluster: r.cluster,
	})
}

// serverErrorLog receives net/http's own error log: TLS handshake failures
// (a client with no or a wrong certificate when client certificates are
// required elsewhere, scanners, plain HTTP) are counted and logged at debug.
type serverErrorLog struct{ r *Receiver }

func (l *serverErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.Contains(msg, "TLS handshake error") {
		l.r.m.rejected.WithLabelValues("tls").Inc()
		l.r.log.Debug("audit webhook: TLS handshake failed", "err", msg)
		return len(p), nil
	}
	l.r.log.Warn("audit webhook: server error", "err", msg)
	return len(p), nil
}
