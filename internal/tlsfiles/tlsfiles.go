// Package tlsfiles reads kubesift's TLS files: CA bundles (CertPool, with
// errors that name the configuration field; CAPool when the bundle may be
// rotated) and serving certificates whose
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

	mu       sync.Mutex
	files    *reloader
	cert     *tls.Certificate
	notAfter time.Time
}

// Options tune a Certificate or a CAPool; the zero value is the default.
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

// Load reads the key pair. An error here (missing file, no PEM, key not
// matching the certificate) names the configuration field and stops the
// start; later errors only keep the previous pair.
func Load(certFile, keyFile string, o Options) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile}
	c.files = newReloader("TLS certificate", o, certFile, keyFile)
	if err := c.files.first(c.load); err != nil {
		return nil, err
	}
	return c, nil
}

// load reads the pair and, if it is good, serves it. c.mu is held (or c is
// not shared yet).
func (c *Certificate) load() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return err
	}
	pair.Leaf = leaf
	c.cert, c.notAfter = &pair, leaf.NotAfter
	return nil
}

// GetCertificate returns the current pair, first re-reading the files if
// the check interval has passed and they changed. A pair that does not
// load (a renewal caught half-written: new certificate, old key) is logged
// once and the previous one is served until the files change again.
func (c *Certificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.files.maybeReload(c.load, "not_after", func() any { return c.notAfter })
	return c.cert, nil
}

// NotAfter is the expiry of the certificate being served.
func (c *Certificate) NotAfter() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.notAfter
}

// Stats are the successful and failed reloads since Load.
func (c *Certificate) Stats() (reloads, failures int64) { return c.files.stats() }

// Collectors are c's metrics, labelled with the listener they serve:
// the expiry of the served certificate (alert on it well before it passes:
// a kube-apiserver refuses an expired webhook certificate and then drops
// audit events once its buffer is full) and the reloads by result.
func (c *Certificate) Collectors(listener string) []prometheus.Collector {
	labels := prometheus.Labels{"listener": listener}
	return append([]prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "kubesift_tls_certificate_expiry_timestamp_seconds",
			Help:        "When the certificate a kubesift listener serves expires (Unix time).",
			ConstLabels: labels,
		}, func() float64 { return float64(c.NotAfter().Unix()) }),
	}, reloadCounters("kubesift_tls_certificate_reloads_total", "Certificate files re-read after they changed, by result.", listener, c.Stats)...)
}

// reloadCounters are the counters of successful and failed reloads.
func reloadCounters(name, help, listener string, stats func() (int64, int64)) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: name, Help: help, ConstLabels: prometheus.Labels{"listener": listener, "result": "ok"},
		}, func() float64 { r, _ := stats(); return float64(r) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: name, Help: help, ConstLabels: prometheus.Labels{"listener": listener, "result": "failed"},
		}, func() float64 { _, f := stats(); return float64(f) }),
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
