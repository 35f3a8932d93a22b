package auditwebhook

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/internal/tlsfiles"
)

func allowedNames(globs ...string) envOpt {
	return func(c *config.AuditWebhookConfig) { c.AllowedClientNames = globs }
}

// clientCert is a client certificate of the receiver's client CA.
func (p *pki) clientCert(t *testing.T, s testenv.CertSpec) *tls.Certificate {
	s.Parent, s.EKU = p.clientCAKey, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	c := testenv.NewKeyPair(t, s).TLS()
	return &c
}

// TestAllowedClientNames: with allowed_client_names set, a certificate of
// the client CA is accepted only when its DNS names, URI SANs or common name
// match a glob; otherwise 403, counted.
func TestAllowedClientNames(t *testing.T) {
	spiffe, _ := url.Parse("spiffe://cluster.local/ns/kube-system/sa/kube-apiserver")
	tests := []struct {
		name     string
		globs    []string
		cert     testenv.CertSpec
		wantCode int
	}{
		{"common name", []string{"kube-apiserver-audit"}, testenv.CertSpec{CN: "kube-apiserver-audit"}, 200},
		{"DNS name by glob", []string{"*.audit.example"}, testenv.CertSpec{CN: "x", DNSNames: []string{"kubelet.example", "apiserver.audit.example"}}, 200},
		{"URI SAN", []string{"spiffe://cluster.local/ns/kube-system/sa/*"}, testenv.CertSpec{CN: "x", URIs: []*url.URL{spiffe}}, 200},
		{"second glob", []string{"nope", "kube-*"}, testenv.CertSpec{CN: "kube-apiserver-audit"}, 200},
		{"a name not allowed", []string{"kube-apiserver-audit"}, testenv.CertSpec{CN: "system:node:worker-1", DNSNames: []string{"worker-1"}}, 403},
		{"glob does not match a longer name", []string{"*.audit.example"}, testenv.CertSpec{CN: "a.b.audit.example.evil"}, 403},
		{"no names at all", []string{"*"}, testenv.CertSpec{}, 403},
		{"empty list: any certificate of the CA", nil, testenv.CertSpec{CN: "system:node:worker-1"}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, allowedNames(tc.globs...))
			resp := e.post(e.client(e.pki.clientCert(t, tc.cert)), eventList(event("a1")))
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantCode)
			}
			want := map[bool]float64{true: 1}[tc.wantCode == 403]
			if got := testutil.ToFloat64(e.rcv.m.clientNameDenied); got != want {
				t.Errorf("client_name_denied = %v, want %v", got, want)
			}
			if ids := e.pub.ids(); (len(ids) == 1) != (tc.wantCode == 200) {
				t.Errorf("published %v", ids)
			}
		})
	}
}

// TestClientCARotation: a client CA file replaced in place is trusted after
// the check interval without a restart, and the reload is counted.
func TestClientCARotation(t *testing.T) {
	e := start(t)
	newCA := testenv.NewKeyPair(t, testenv.CertSpec{CN: "rotated-client-ca", IsCA: true})
	newClient := testenv.NewKeyPair(t, testenv.CertSpec{CN: "kube-apiserver-audit", Parent: newCA, EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}).TLS()
	if r := e.post(e.client(&newClient), eventList(event("early"))); r.StatusCode != http.StatusForbidden {
		t.Fatalf("new CA's client before the rotation: %d, want 403", r.StatusCode)
	}
	caFile, _ := newCA.Write(t, t.TempDir(), "rotated")
	if err := os.Rename(caFile, e.pki.clientCA); err != nil {
		t.Fatal(err)
	}
	e.skew.Store(int64(tlsfiles.DefaultCheckInterval))
	if r := e.post(e.client(&newClient), eventList(event("after"))); r.StatusCode != http.StatusOK {
		t.Fatalf("new CA's client after the rotation: %d", r.StatusCode)
	}
	if r := e.post(e.client(&e.pki.goodClient), eventList(event("old"))); r.StatusCode != http.StatusForbidden {
		t.Errorf("old CA's client after the rotation: %d, want 403", r.StatusCode)
	}
	if got := testutil.ToFloat64(e.rcv.clientCAs.Collectors(Source)[0]); got != 1 {
		t.Errorf("CA reloads = %v, want 1", got)
	}
}
