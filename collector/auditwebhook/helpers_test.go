package auditwebhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/record"
)

// fakePub is an in-memory collector.Publisher: it records what it got and
// can be told to fail or to block.
type fakePub struct {
	mu      sync.Mutex
	recs    []*record.Record
	dls     []collector.DeadLetter
	err     error         // returned by Publish
	dlErr   error         // returned by PublishDeadLetter
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

func (p *fakePub) PublishDeadLetter(_ context.Context, dl collector.DeadLetter) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dlErr != nil {
		return p.dlErr
	}
	p.dls = append(p.dls, dl)
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
	goodClient, rogueClient   tls.Certificate
	goodClientNoClientAuthEKU tls.Certificate
}

type keyPair struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

func newKeyPair(t *testing.T, cn string, parent *keyPair, isCA bool, eku []x509.ExtKeyUsage, ips []net.IP) *keyPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		ExtKeyUsage:           eku,
		IPAddresses:           ips,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &keyPair{cert: cert, der: der, key: key}
}

func (k *keyPair) tlsCert() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{k.der}, PrivateKey: k.key, Leaf: k.cert}
}

func (k *keyPair) write(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	kb, err := x509.MarshalECPrivateKey(k.key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	srvCA := newKeyPair(t, "server-ca", nil, true, nil, nil)
	srv := newKeyPair(t, "receiver", srvCA, false, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, []net.IP{net.ParseIP("127.0.0.1")})
	cliCA := newKeyPair(t, "client-ca", nil, true, nil, nil)
	cli := newKeyPair(t, "kube-apiserver-audit", cliCA, false, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil)
	cliNoEKU := newKeyPair(t, "server-only", cliCA, false, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, nil)
	rogueCA := newKeyPair(t, "rogue-ca", nil, true, nil, nil)
	rogue := newKeyPair(t, "kube-apiserver-audit", rogueCA, false, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil)
	p := &pki{dir: dir, serverCA: x509.NewCertPool(), goodClient: cli.tlsCert(), rogueClient: rogue.tlsCert(), goodClientNoClientAuthEKU: cliNoEKU.tlsCert()}
	p.serverCA.AddCert(srvCA.cert)
	p.serverCert, p.serverKey = srv.write(t, dir, "server")
	p.clientCA, _ = cliCA.write(t, dir, "client-ca")
	return p
}
