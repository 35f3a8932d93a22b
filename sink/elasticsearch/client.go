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
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/elastic/elastic-transport-go/v8/elastictransport"
	tpversion "github.com/elastic/elastic-transport-go/v8/elastictransport/version"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/tlsfiles"
)

// Client is the Elasticsearch client every kubesift component uses: the
// REST API of go-elasticsearch's esapi over elastic-transport, with what
// that library's root package adds to them kept — the check that the server
// is Elasticsearch (the X-Elastic-Product header of the first successful
// answer), its x-elastic-client-meta and User-Agent headers, and the
// compatibility mode of ELASTIC_CLIENT_APIVERSIONING. It does not import the
// root package, because that package also holds the typed API, thousands of
// generated packages kubesift never calls that every first build compiled.
type Client struct {
	*esapi.API
	transport *elastictransport.Client
	meta      string
	compat    bool
	genuine   atomic.Bool // a successful answer carried the product header
}

// errNotElasticsearch is the product check's refusal, in go-elasticsearch's
// words.
var errNotElasticsearch = errors.New("the client noticed that the server is not Elasticsearch and we do not support this unknown product")

// compatibleWith8 is the media type of the REST API compatibility mode.
const compatibleWith8 = "application/vnd.elasticsearch+json;compatible-with=8"

// Perform sends req through the transport with the client headers, and
// refuses any answer until one successful answer has shown the server is
// Elasticsearch, as go-elasticsearch's client does.
func (c *Client) Perform(req *http.Request) (*http.Response, error) {
	if c.compat {
		if req.Body != nil {
			req.Header.Set("Content-Type", compatibleWith8)
		}
		req.Header.Set("Accept", compatibleWith8)
	}
	if m := req.Header.Get("X-Elastic-Client-Meta"); m != "" {
		req.Header.Set("X-Elastic-Client-Meta", c.meta+","+m)
	} else {
		req.Header.Set("X-Elastic-Client-Meta", c.meta)
	}
	res, err := c.transport.Perform(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode >= 200 && res.StatusCode < 300 && !c.genuine.Load() {
		if res.Header.Get("X-Elastic-Product") != "Elasticsearch" {
			res.Body.Close()
			return nil, errNotElasticsearch
		}
		c.genuine.Store(true)
	}
	return res, nil
}

// NewClient returns a client for cfg: basic auth, API key or bearer token,
// TLS verified against ca_file or ca_fingerprint (or not at all with
// tls.insecure_skip_verify). The client's own retries are off: the Writer and
// Setup retry through sink.Do, the one retry wrapper, so that a refused
// request is never retried twice over.
func NewClient(cfg config.ElasticsearchConfig) (*Client, error) {
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
	urls := make([]*url.URL, 0, len(addrs))
	for _, a := range addrs {
		u, err := url.Parse(strings.TrimRight(a, "/"))
		if err != nil {
			// url's message quotes the address, which may hold a password.
			return nil, fmt.Errorf("elasticsearch client: sink.elasticsearch.addresses: cannot parse an address")
		}
		urls = append(urls, u)
	}
	user, password := cfg.Username, string(cfg.Password)
	if u := urls[0].User; u != nil {
		user = u.Username()
		password, _ = u.Password()
	}
	opts := []elastictransport.Option{
		elastictransport.WithUserAgent(userAgent()),
		elastictransport.WithURLs(urls...),
		elastictransport.WithTransport(transport),
		elastictransport.WithDisableRetry(),
	}
	if cfg.APIKey != "" {
		opts = append(opts, elastictransport.WithAPIKey(string(cfg.APIKey)))
	} else if user != "" || password != "" {
		opts = append(opts, elastictransport.WithBasicAuth(user, password))
	}
	if cfg.BearerToken != "" {
		// sent as "Authorization: Bearer <token>"
		opts = append(opts, elastictransport.WithServiceToken(string(cfg.BearerToken)))
	}
	if cfg.CAFingerprint != "" {
		opts = append(opts, elastictransport.WithCertificateFingerprint(strings.ToLower(strings.ReplaceAll(cfg.CAFingerprint, ":", ""))))
	}
	tp, err := elastictransport.NewClient(opts...)
	if err != nil {
		// The library's messages name options, never their values.
		return nil, fmt.Errorf("elasticsearch client: %w", err)
	}
	compat, _ := strconv.ParseBool(os.Getenv("ELASTIC_CLIENT_APIVERSIONING"))
	c := &Client{transport: tp, meta: metaHeader(), compat: compat}
	c.API = esapi.New(c)
	return c, nil
}

// userAgent and metaHeader are the values go-elasticsearch's client sends,
// so that Elasticsearch's logs and usage statistics see the same client.
func userAgent() string {
	return fmt.Sprintf("go-elasticsearch/%s (%s %s; Go %s)", esapi.Version, runtime.GOOS, runtime.GOARCH, strings.TrimPrefix(runtime.Version(), "go"))
}

func metaHeader() string {
	goV := strippedVersion(runtime.Version())
	return "es=" + strippedVersion(esapi.Version) + ",go=" + goV + ",t=" + strippedVersion(tpversion.Transport) + ",hc=" + goV
}

var metaVersion = regexp.MustCompile(`([0-9.]+)(.*)`)

// strippedVersion is a version as the meta header carries it: the numeric
// part, with "p" for a pre-release.
func strippedVersion(v string) string {
	m := metaVersion.FindStringSubmatch(v)
	if len(m) == 3 && !strings.Contains(v, "devel") {
		if m[2] != "" {
			return m[1] + "p"
		}
		return m[1]
	}
	return "0.0p"
}
