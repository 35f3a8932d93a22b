package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CertSpec describes a test certificate; zero fields take the defaults.
type CertSpec struct {
	CN     string
	Parent *KeyPair // signs the certificate; nil: self-signed
	IsCA   bool
	EKU    []x509.ExtKeyUsage
	IPs    []net.IP
	// DNSNames and URIs are subject alternative names.
	DNSNames []string
	URIs     []*url.URL
	// Serial is random when 0.
	Serial int64
	// NotAfter is an hour from now when zero.
	NotAfter time.Time
}

// KeyPair is a test certificate with its ECDSA P-256 key.
type KeyPair struct {
	Cert *x509.Certificate
	DER  []byte
	Key  *ecdsa.PrivateKey
}

// NewKeyPair creates the certificate s describes.
func NewKeyPair(t testing.TB, s CertSpec) *KeyPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial := big.NewInt(s.Serial)
	if s.Serial == 0 {
		serial, _ = rand.Int(rand.Reader, big.NewInt(1<<62))
	}
	if s.NotAfter.IsZero() {
		s.NotAfter = time.Now().Add(time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: s.CN},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: s.NotAfter,
		BasicConstraintsValid: true, IsCA: s.IsCA, ExtKeyUsage: s.EKU, IPAddresses: s.IPs,
		DNSNames: s.DNSNames, URIs: s.URIs,
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if s.IsCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	signer, signerKey := tmpl, key
	if s.Parent != nil {
		signer, signerKey = s.Parent.Cert, s.Parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &KeyPair{Cert: cert, DER: der, Key: key}
}

// TLS is k as a tls.Certificate (for a client or a server).
func (k *KeyPair) TLS() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{k.DER}, PrivateKey: k.Key, Leaf: k.Cert}
}

// PEM encodes the certificate and the key.
func (k *KeyPair) PEM() (certPEM, keyPEM []byte) {
	kb, err := x509.MarshalECPrivateKey(k.Key)
	if err != nil {
		panic(err) // a P-256 key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.DER}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// Write writes dir/name.crt and dir/name.key.
func (k *KeyPair) Write(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM := k.PEM()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// Pool is a certificate pool trusting k.
func (k *KeyPair) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(k.Cert)
	return p
}

// SelfSigned writes dir/tls.crt and dir/tls.key, a self-signed server
// certificate for 127.0.0.1 that is its own CA, and returns the files and
// a pool trusting it.
func SelfSigned(t testing.TB, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	k := NewKeyPair(t, CertSpec{CN: "kubesift test", IsCA: true, Serial: 1,
		EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	certFile, keyFile = k.Write(t, dir, "tls")
	return certFile, keyFile, k.Pool()
}
