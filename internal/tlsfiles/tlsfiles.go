// Package tlsfiles reads kubesift's TLS files: CA bundles (CertPool, with
// errors that name the configuration field) and serving certificates whose
// files are replaced while the process runs (Certificate): cert-manager
// renewing a Secret, the kubelet swapping a Secret volume's ..data symlink,
// an operator copying new files in. kubesift's listeners (the audit webhook
// receiver, the silence API) read their key pair through it, so a renewed
// certificate is served without a restart, and an expiring one shows in a
// metric before the API server starts refusing the webhook.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultCheckInterval is how often, at most, the files are looked at: a
// stat of two files per interval, on the next handshake after it.
const DefaultCheckInterval = 10 * time.Second

// Certificate is a key pair read from a certificate file and a key file,
// re-read when either changes. Use GetCertificate as tls.Config's.
type Certificate struct {
	certFile, keyFile string
	field             string // the config fields, for errors and logs
	log               *slog.Logger
	interval          time.Duration
	now               func() time.Time

	mu       sync.Mutex
	cert     *tls.Certificate
	notAfter time.Time
	loaded   [2]stamp // of the files the served pair was read from
	tried    [2]stamp // of the files last tried: a bad pair is tried once
	checked  time.Time
	reloads  int64
	failures int64
}

// Options tune a Certificate; the zero value is the default.
type Options struct {
	// Field names the configuration fields the files come from
	// ("collector.audit_webhook.tls_cert_file/tls_key_file").
	Field string
	// Log receives reloads and failed reloads; slog.Default when nil.
	Log *slog.Logger
	// CheckInterval is DefaultCheckInterval when 0.
	CheckInterval time.Duration
	// Now is time.Now when nil (tests move it).
	Now func() time.Time
}

// stamp tells a file's versions apart: modification time and size, of what
// the path points to (os.Stat follows the ..data symlink of a Secret volume).
type stamp struct {
	mod  time.Time
	size int64
}

// Load reads the key pair. An error here (missing file, no PEM, key not
// matching the certificate) names the configuration field and stops the
// start; later errors only keep the previous pair.
func Load(certFile, keyFile string, o Options) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile, field: o.Field, log: o.Log, interval: o.CheckInterval, now: o.Now}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.interval <= 0 {
		c.interval = DefaultCheckInterval
	}
	if c.now == nil {
		c.now = time.Now
	}
	st, err := c.stamps()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.field, err)
	}
	if err := c.load(st); err != nil {
		return nil, fmt.Errorf("%s: %w", c.field, err)
	}
	c.checked = c.now()
	return c, nil
}

func (c *Certificate) stamps() ([2]stamp, error) {
	var st [2]stamp
	for i, p := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(p)
		if err != nil {
			return st, err
		}
		st[i] = stamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return st, nil
}

// load reads the pair and, if it is good, serves it. c.mu is held (or c is
// not shared yet).
func (c *Certificate) load(st [2]stamp) error {
	c.tried = st
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return err
	}
	pair.Leaf = leaf
	c.cert, c.notAfter, c.loaded = &pair, leaf.NotAfter, st
	return nil
}

// GetCertificate returns the current pair, first re-reading the files if
// the check interval has passed and they changed. A pair that does not
// load (a renewal caught half-written: new certificate, old key) is logged
// once and the previous one is served until the files change again.
func (c *Certificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); now.Sub(c.checked) >= c.interval {
		c.checked = now
		st, err := c.stamps()
		switch {
		case err != nil:
			if c.tried != ([2]stamp{}) {
				c.failures++
				c.log.Warn("TLS certificate files unreadable; serving the previous certificate", "field", c.field, "err", err)
				c.tried = [2]stamp{}
			}
		case st != c.loaded && st != c.tried:
			if err := c.load(st); err != nil {
				c.failures++
				c.log.Warn("TLS certificate files changed but do not load; serving the previous certificate", "field", c.field, "err", err)
			} else {
				c.reloads++
				c.log.Info("TLS certificate reloaded", "field", c.field, "not_after", c.notAfter)
			}
		}
	}
	return c.cert, nil
}

// NotAfter is the expiry of the certificate being served.
func (c *Certificate) NotAfter() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.notAfter
}

// Stats are the successful and failed reloads since Load.
func (c *Certificate) Stats() (reloads, failures int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reloads, c.failures
}

// Collectors are c's metrics, labelled with the listener they serve:
// the expiry of the served certificate (alert on it well before it passes:
// a kube-apiserver refuses an expired webhook certificate and then drops
// audit events once its buffer is full) and the reloads by result.
func (c *Certificate) Collectors(listener string) []prometheus.Collector {
	labels := prometheus.Labels{"listener": listener}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "kubesift_tls_certificate_expiry_timestamp_seconds",
			Help:        "When the certificate a kubesift listener serves expires (Unix time).",
			ConstLabels: labels,
		}, func() float64 { return float64(c.NotAfter().Unix()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "kubesift_tls_certificate_reloads_total",
			Help:        "Certificate files re-read after they changed, by result.",
			ConstLabels: prometheus.Labels{"listener": listener, "result": "ok"},
		}, func() float64 { r, _ := c.Stats(); return float64(r) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "kubesift_tls_certificate_reloads_total",
			Help:        "Certificate files re-read after they changed, by result.",
			ConstLabels: prometheus.Labels{"listener": listener, "result": "failed"},
		}, func() float64 { _, f := c.Stats(); return float64(f) }),
	}
}

// CertPool reads the PEM certificates of file into a pool. Errors start
// with field, the configuration field or flag file came from; a file with
// no certificate in it is an error, not an empty pool that would trust
// nothing and fail every handshake later with a vaguer message.
func CertPool(file, field string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", field, file)
	}
	return pool, nil
}
