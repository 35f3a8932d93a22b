package tlsfiles

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// CAPool is a CA bundle read from a file and re-read when it changes, like a
// Certificate: a rotated client CA is trusted without a restart. Use Pool
// for every verification instead of keeping the pool it returns.
type CAPool struct {
	file string

	mu    sync.Mutex
	files *reloader
	pool  *x509.CertPool
	count int // certificates in pool
}

// LoadCAPool reads the CA bundle. An error here names the configuration
// field (o.Field) and stops the start; later errors only keep the previous
// pool.
func LoadCAPool(file string, o Options) (*CAPool, error) {
	p := &CAPool{file: file}
	p.files = newReloader("CA bundle", o, file)
	if err := p.files.first(p.load); err != nil {
		return nil, err
	}
	return p, nil
}

// load reads the bundle strictly: every PEM block must be whole and every
// CERTIFICATE block must parse. A bundle caught half-written would otherwise
// load as the certificates before the cut, silently dropping a CA that is
// still in use.
func (p *CAPool) load() error {
	data, err := os.ReadFile(p.file)
	if err != nil {
		return err
	}
	pool, n := x509.NewCertPool(), 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(bytes.TrimSpace(rest)) > 0 {
				return fmt.Errorf("%s: text after the last whole PEM block (a truncated or not a PEM file)", p.file)
			}
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("%s: certificate %d: %w", p.file, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return errors.New(p.file + " holds no PEM certificate")
	}
	p.pool, p.count = pool, n
	return nil
}

// Pool returns the current pool, first re-reading the file if the check
// interval has passed and it changed.
func (p *CAPool) Pool() *x509.CertPool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files.maybeReload(p.load, "certificates", func() any { return p.count })
	return p.pool
}

// Stats are the successful and failed reloads since LoadCAPool.
func (p *CAPool) Stats() (reloads, failures int64) { return p.files.stats() }

// Collectors are p's reload counters by result, labelled with the listener
// that trusts the bundle.
func (p *CAPool) Collectors(listener string) []prometheus.Collector {
	return reloadCounters("kubesift_tls_ca_reloads_total", "CA bundle files re-read after they changed, by result.", listener, p.Stats)
}
