// Package elasticsearch is kubesift's Elasticsearch sink: NewClient builds
// the client from the configuration, Setup installs templates, data streams,
// the alerts index, the findings index and the ILM policy, Writer writes
// documents in bulk under the sink.Writer contract (per-document done,
// retries inside, bounded queue as backpressure), and FindingsWriter writes
// posture findings and scores through a Writer. docs/elasticsearch.md
// describes the mapping and the write path, docs/posture.md the findings.
package elasticsearch

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/tlsfiles"
)

// NewClient returns a client for cfg: basic auth, API key or bearer token,
// TLS verified against ca_file or ca_fingerprint (or not at all with
// tls.insecure_skip_verify). The client's own retries are off: the Writer and
// Setup retry through sink.Do, the one retry wrapper, so that a refused
// request is never retried twice over.
func NewClient(cfg config.ElasticsearchConfig) (*elasticsearch.Client, error) {
	addrs := cfg.Addresses
	if len(addrs) == 0 {
		addrs = []string{"http://localhost:9200"}
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pool, err := tlsfiles.CertPool(cfg.CAFile, "sink.elasticsearch.ca_file")
		if err != nil {
			return nil, err
		}
		tlsCfg.RootCAs = pool
	}
	if cfg.TLS.InsecureSkipVerify {
		tlsCfg.InsecureSkipVerify = true
	}
	workers := max(cfg.Workers, 1)
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.RequestTimeout,
		IdleConnTimeout:       90 * time.Second,
		// One kept-alive connection per bulk worker, plus setup and
		// health checks, per node.
		MaxIdleConnsPerHost: workers + 2,
		ForceAttemptHTTP2:   false,
	}
	esCfg := elasticsearch.Config{
		Addresses:    addrs,
		Username:     cfg.Username,
		Password:     string(cfg.Password),
		APIKey:       string(cfg.APIKey),
		ServiceToken: string(cfg.BearerToken), // sent as "Authorization: Bearer <token>"
		Transport:    transport,
		DisableRetry: true,
	}
	if cfg.CAFingerprint != "" {
		esCfg.CertificateFingerprint = strings.ToLower(strings.ReplaceAll(cfg.CAFingerprint, ":", ""))
	}
	es, err := elasticsearch.NewClient(esCfg)
	if err != nil {
		// The library's messages name options, never their values.
		return nil, fmt.Errorf("elasticsearch client: %w", err)
	}
	return es, nil
}
