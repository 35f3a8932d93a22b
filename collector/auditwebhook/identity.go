package auditwebhook

import (
	"crypto/x509"
	"net/http"
	"path"
)

// nameAllowed reports whether a client certificate that client_ca_file
// signed may post: with allowed_client_names set, one of its DNS names, URI
// SANs or its common name must match one of the globs. A CA is often the
// whole cluster's (kubelets, controllers, users), so the CA alone says only
// that the cluster issued the certificate, not that it is the API server's.
// A refusal is counted (also as rejected{reason="auth"}) and logged with
// the certificate's names and serial, which are public, never a secret.
func (r *Receiver) nameAllowed(req *http.Request, cert *x509.Certificate) bool {
	if len(r.names) == 0 {
		return true
	}
	names := clientNames(cert)
	for _, g := range r.names {
		for _, n := range names {
			if ok, _ := path.Match(g, n); ok {
				return true
			}
		}
	}
	r.m.clientNameDenied.Inc()
	r.logLimit.Warn(r.log, "client_name", "audit webhook: client certificate of client_ca_file has no name in allowed_client_names",
		"remote", req.RemoteAddr, "names", names, "serial", cert.SerialNumber.String())
	return false
}

// clientNames are the names a certificate is matched by: DNS SANs, URI SANs,
// then the common name.
func clientNames(cert *x509.Certificate) []string {
	names := append([]string(nil), cert.DNSNames...)
	for _, u := range cert.URIs {
		names = append(names, u.String())
	}
	if cert.Subject.CommonName != "" {
		names = append(names, cert.Subject.CommonName)
	}
	return names
}
