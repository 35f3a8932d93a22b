package auditwebhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"testing"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// fakePub is an in-memory collector.Publisher: it records what it got and
// can be told to fail or to block.
type fakePub struct {
	mu      sync.Mutex
	recs    []*record.Record
	dls     []collector.DeadLetter
	err     error         // returned by Publish
	dlErr   error         // returned by PublishDeadLetters
	block   chan struct{} // when set, Publish waits until it is closed (or ctx ends)
	entered chan struct{} // when set, Publish signals entry (non-blocking)
	calls   int
}

func (p *fakePub) Publish(ctx context.Context, recs []*record.Record) error {
	p.mu.Lock()
	p.calls++
	block, entered, err := p.block, p.entered, p.err
	p.mu.Unlock()
	if entered != nil {
		select {
		case entered <- struct{}{}:
		default:
		}
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.recs = append(p.recs, recs...)
	p.mu.Unlock()
	return nil
}

func (p *fakePub) PublishDeadLetters(_ context.Context, dls []collector.DeadLetter) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dlErr != nil {
		return p.dlErr
	}
	p.dls = append(p.dls, dls...)
	return nil
}

func (p *fakePub) ids() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, r := range p.recs {
		out = append(out, r.ID)
	}
	return out
}

func (p *fakePub) deadLetters() []collector.DeadLetter {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]collector.DeadLetter(nil), p.dls...)
}

// pki is a throw-away set of certificates: a server CA and serving
// certificate for 127.0.0.1, the client CA the receiver trusts with a client
// certificate, and a second, untrusted CA with its own client certificate.
type pki struct {
	dir                       string
	serverCA                  *x509.CertPool
	serverCert, serverKey     string // files
	clientCA                  string // file
	clientCAKey               *testenv.KeyPair
	goodClient, rogueClient   tls.Certificate
	goodClientNoClientAuthEKU tls.Certificate
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	dir := t.TempDir()
	ca := func(cn string) *testenv.KeyPair { return testenv.NewKeyPair(t, testenv.CertSpec{CN: cn, IsCA: true}) }
	leaf := func(cn string, parent *testenv.KeyPair, eku x509.ExtKeyUsage, ips ...net.IP) *testenv.KeyPair {
		return testenv.NewKeyPair(t, testenv.CertSpec{CN: cn, Parent: parent, EKU: []x509.ExtKeyUsage{eku}, IPs: ips})
	}
	srvCA := ca("server-ca")
	srv := leaf("receiver", srvCA, x509.ExtKeyUsageServerAuth, net.ParseIP("127.0.0.1"))
	cliCA := ca("client-ca")
	cli := leaf("kube-apiserver-audit", cliCA, x509.ExtKeyUsageClientAuth)
	cliNoEKU := leaf("server-only", cliCA, x509.ExtKeyUsageServerAuth)
	rogueCA := ca("rogue-ca")
	rogue := leaf("kube-apiserver-audit", rogueCA, x509.ExtKeyUsageClientAuth)
	p := &pki{dir: dir, serverCA: srvCA.Pool(), clientCAKey: cliCA, goodClient: cli.TLS(), rogueClient: rogue.TLS(), goodClientNoClientAuthEKU: cliNoEKU.TLS()}
	p.serverCert, p.serverKey = srv.Write(t, dir, "server")
	p.clientCA, _ = cliCA.Write(t, dir, "client-ca")
	return p
}
