package obs

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// BearerToken returns the token of an Authorization header value of the
// Bearer scheme. The scheme is matched without regard to case, as RFC 9110
// §11.1 says of every authentication scheme ("bearer", "BEARER" and
// "Bearer" are one scheme); clients differ in how they spell it. ok is false
// for another scheme or an empty token.
func BearerToken(header string) (token string, ok bool) {
	scheme, tok, found := strings.Cut(header, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// Token is a bearer token that requests must carry. Digests are compared,
// in constant time, so that neither the content nor the length of the token
// leaks through the time an answer takes.
type Token struct{ sum [sha256.Size]byte }

// NewToken returns the check for token, which must not be empty.
func NewToken(token string) *Token { return &Token{sum: sha256.Sum256([]byte(token))} }

// The reasons Check gives for a refusal.
const (
	AuthMissing = "missing" // no Authorization header of the Bearer scheme
	AuthWrong   = "wrong"   // a bearer token that is not this one
)

// Check returns "" when r carries the token, else AuthMissing or AuthWrong.
func (t *Token) Check(r *http.Request) string {
	got, ok := BearerToken(r.Header.Get("Authorization"))
	if !ok {
		return AuthMissing
	}
	sum := sha256.Sum256([]byte(got))
	if subtle.ConstantTimeCompare(sum[:], t.sum[:]) != 1 {
		return AuthWrong
	}
	return ""
}

// RequireToken wraps next so that only requests with the token reach it;
// the others are answered 401 with a WWW-Authenticate challenge for realm,
// counted in kubesift_listener_auth_rejected_total{listener=name, reason}
// (registered with reg) and logged with the remote address — never the
// token presented — at most once per LogInterval and reason.
func (t *Token) RequireToken(next http.Handler, name, realm string, reg prometheus.Registerer, log *slog.Logger) (http.Handler, error) {
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "kubesift_listener_auth_rejected_total",
		Help:        "Requests refused because their bearer token was missing or wrong.",
		ConstLabels: prometheus.Labels{"listener": name},
	}, []string{"reason"})
	for _, r := range []string{AuthMissing, AuthWrong} {
		rejected.WithLabelValues(r)
	}
	if err := Register(reg, rejected); err != nil {
		return nil, fmt.Errorf("listener %s: register metrics: %w", name, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var limit LogLimiter
	challenge := fmt.Sprintf("Bearer realm=%q", realm)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reason := t.Check(r)
		if reason == "" {
			next.ServeHTTP(w, r)
			return
		}
		rejected.WithLabelValues(reason).Inc()
		limit.Warn(log, reason, "request refused: bearer token "+reason,
			"listener", name, "remote", r.RemoteAddr, "path", r.URL.Path)
		w.Header().Set("WWW-Authenticate", challenge)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, "{\"error\":\"missing or wrong bearer token\"}\n")
	}), nil
}
