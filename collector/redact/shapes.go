package redact

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/kubesift/kubesift/record"
)

// This file holds the rules that apply to objects of every kind, not only
// to Secrets and ConfigMaps: credential-named container env values, probe
// and lifecycle HTTP headers, ingress snippet annotations, credentials in
// URLs, and the credentials-file detector used for ConfigMap values and for
// dead letters. docs/redaction.md has the table of what each rule masks.

// credentialWords make a name credential-like when it contains one of them
// (upper-cased, so PASSWORD, db_password and dbPassword all match). AUTH
// also matches AUTHOR: a false positive costs one masked value, a false
// negative a leaked one.
var credentialWords = []string{"PASSWORD", "PASSWD", "SECRET", "TOKEN", "CREDENTIAL", "AUTH", "PRIVATE", "APIKEY", "API_KEY", "JWT", "COOKIE", "SESSION"}

// keyWords are the whole words (split at non-letters and camel-case humps)
// that make a name credential-like: KEY itself, so SSH_KEY and
// ENCRYPTION_KEY match, but not as a prefix or suffix of a longer word, so
// KEYCLOAK_URL, MONKEY and KEYSPACE do not.
var keyWords = map[string]bool{"KEY": true, "KEYS": true, "APIKEY": true, "ACCESSKEY": true, "SECRETKEY": true, "PRIVATEKEY": true}

// isCredentialName reports whether an env variable, header or field name
// looks like it holds a credential (see credentialWords and keyWords).
func isCredentialName(name string) bool {
	up := strings.ToUpper(name)
	for _, w := range credentialWords {
		if strings.Contains(up, w) {
			return true
		}
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		boundary := i == len(name) || !isLetter(name[i]) ||
			(i > start && isUpper(name[i]) && !isUpper(name[i-1]))
		if !boundary {
			continue
		}
		if i > start && keyWords[up[start:i]] {
			return true
		}
		start = i
		if i < len(name) && !isLetter(name[i]) {
			start = i + 1
		}
	}
	return false
}

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isUpper(c byte) bool  { return c >= 'A' && c <= 'Z' }

// isCredentialHeader reports whether an HTTP header's value is a credential:
// Authorization, Proxy-Authorization, Cookie and any credential-like name
// (X-Api-Key, X-Auth-Token, …).
func isCredentialHeader(name string) bool {
	return isCredentialName(strings.ReplaceAll(name, "-", "_"))
}

// isCredentialKey judges a field or annotation key for the dead-letter key
// rule. An annotation-style key (example.com/db-password) is judged by its
// name part: the domain of authorization.k8s.io/decision is no credential.
// A field named just "key" is a reference in Kubernetes objects
// (secretKeyRef.key, label selector and toleration keys), not a credential.
func isCredentialKey(k string) bool {
	name := k[strings.LastIndexByte(k, '/')+1:]
	return !strings.EqualFold(name, "key") && isCredentialName(name)
}

// isSnippetAnnotation: ingress-nginx (and compatible controllers) paste
// *-snippet annotations verbatim into their configuration, so they are where
// people put basic-auth headers, proxy credentials and Lua with keys. They
// are masked whole: a configuration language cannot be parsed here.
func isSnippetAnnotation(key string) bool {
	return strings.HasSuffix(key, "-snippet")
}

var (
	// urlUserinfo is the password part of scheme://user:password@host.
	urlUserinfo = regexp.MustCompile(`(?i)([a-z][a-z0-9+.-]*://[^/\s:@"'\\]*:)([^@\s/"'\\]+)(@)`)
	// dsnUserinfo is the password of a DSN without scheme
	// (user:password@tcp(host)/db), checked only in values of DSN-,
	// URL- or connection-named variables.
	dsnUserinfo = regexp.MustCompile(`^([^:@/\s]+:)([^@\s]+)(@)`)
	// credAssign is NAME = value / NAME: value / "NAME": "value" with a
	// credential-like NAME, as in .env, INI, YAML, properties and JSON
	// files and in command lines; only the value is masked.
	credAssign = regexp.MustCompile(`(?i)((?:^|[^a-z0-9_])[a-z0-9_.-]*(?:password|passwd|secret|token|credential|private_?key|api_?key|access_?key|auth|jwt|signature)[a-z0-9_.-]*\\?"?[ \t]*[=:][ \t]*\\?"?)([^\s"'&,;\\]+)`)
	// awsKeyID is an AWS access key id (long-term AKIA, temporary ASIA).
	awsKeyID = regexp.MustCompile(`\b(?:AKIA|ASIA)[A-Z0-9]{16}\b`)
	// jwtToken is a JSON Web Token (its header always starts {" = eyJ).
	jwtToken = regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*`)
	// pemPrivate is a PEM private key block, or its start up to the end of
	// the text when the END line is missing (a cut document).
	pemPrivate = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)`)
	// bearer is an Authorization header value quoted in text.
	bearer = regexp.MustCompile(`(?i)\b((?:bearer|basic)[ \t]+)[A-Za-z0-9._~+/=-]{6,}`)
)

// maskText masks the credential patterns in free text (a ConfigMap value,
// the head of an unparsable dead letter, an error message): credential-named
// assignments keep the name and lose the value; AWS key ids, JWTs, PEM
// private keys and bearer/basic credentials are replaced; URL passwords and
// credential query parameters lose their values. It reports whether anything
// changed; the common case (no candidate byte sequence) allocates nothing.
func (s *Sanitizer) maskText(t string) (string, bool) {
	out := t
	// Bearer/basic first: "Authorization: Bearer x" would otherwise lose
	// only the word Bearer to credAssign.
	if strings.Contains(out, "earer") || strings.Contains(out, "asic") || strings.Contains(out, "EARER") || strings.Contains(out, "ASIC") {
		out = bearer.ReplaceAllString(out, "${1}"+Marker)
	}
	if strings.ContainsAny(out, "=:") {
		out = credAssign.ReplaceAllString(out, "${1}"+Marker)
		out = urlUserinfo.ReplaceAllString(out, "${1}"+Marker+"${3}")
		out = s.paramsRe.ReplaceAllString(out, "${1}"+Marker)
	}
	if strings.Contains(out, "AKIA") || strings.Contains(out, "ASIA") {
		out = awsKeyID.ReplaceAllString(out, Marker)
	}
	if strings.Contains(out, "eyJ") {
		out = jwtToken.ReplaceAllString(out, Marker)
	}
	if strings.Contains(out, "PRIVATE KEY-----") {
		out = pemPrivate.ReplaceAllString(out, Marker)
	}
	return out, out != t
}

// maskURL masks the password of a URL's userinfo and the values of
// credential query parameters in a string that holds a URL (an annotation,
// a webhook's clientConfig.url, an env value). Cheap when there is no "://".
func (s *Sanitizer) maskURL(v string) (string, bool) {
	if !strings.Contains(v, "://") {
		return v, false
	}
	out := urlUserinfo.ReplaceAllString(v, "${1}"+Marker+"${3}")
	if red, ok := s.redactURI(out); ok {
		out = red
	}
	return out, out != v
}

// redactEnv masks the values of credential-named entries of a container's
// env list; valueFrom (a reference, not a value) is kept. A connection
// string under any name loses its password.
func (w *walker) redactEnv(list []any) {
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		name, _ := m["name"].(string)
		val, ok := m["value"].(string)
		if !ok || val == "" || val == Marker {
			continue
		}
		if isCredentialName(name) {
			m["value"] = Marker
			w.kinds |= bitEnvValue
			continue
		}
		if out, ok := w.s.maskURL(val); ok {
			m["value"] = out
			w.kinds |= bitEnvValue
			continue
		}
		up := strings.ToUpper(name)
		if strings.Contains(up, "DSN") || strings.Contains(up, "URL") || strings.Contains(up, "URI") || strings.Contains(up, "CONN") {
			if out := dsnUserinfo.ReplaceAllString(val, "${1}"+Marker+"${3}"); out != val {
				m["value"] = out
				w.kinds |= bitEnvValue
			}
		}
	}
}

// redactHeaders masks the values of credential headers in an
// httpGet.httpHeaders list (probes, lifecycle handlers).
func (w *walker) redactHeaders(list []any) {
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		name, _ := m["name"].(string)
		if val, ok := m["value"].(string); ok && val != "" && val != Marker && isCredentialHeader(name) {
			m["value"] = Marker
			w.kinds |= bitHTTPHeader
		}
	}
}

// redactAnnotations masks snippet annotations and URL credentials in any
// annotation, and redacts the last-applied configuration by the same
// generic rules (it holds the object as applied: env values included). An
// unparsable last-applied annotation of a kind without secret data is kept.
func (w *walker) redactAnnotations(m map[string]any) {
	for k, v := range m {
		str, ok := v.(string)
		if !ok || str == Marker {
			continue
		}
		switch {
		case isSnippetAnnotation(k):
			m[k] = Marker
			w.kinds |= bitAnnotationSnippet
		case k == LastAppliedAnnotation:
			if !strings.Contains(str, "env") && !strings.Contains(str, "httpHeaders") &&
				!strings.Contains(str, "-snippet") && !strings.Contains(str, "://") {
				continue
			}
			parsed, err := parseJSON([]byte(str))
			if err != nil {
				continue
			}
			inner := walker{s: w.s, kind: bodyPlain, keys: w.keys}
			parsed = inner.top(parsed)
			if inner.kinds == 0 {
				continue
			}
			w.kinds |= inner.kinds
			if out, err := encodeJSON(parsed); err == nil {
				m[k] = string(out)
			} else {
				m[k] = Marker
			}
		case w.keys && isCredentialKey(k):
			m[k] = Marker
			w.kinds |= bitCredentialKey
		default:
			if out, ok := w.s.maskURL(str); ok {
				m[k] = out
				w.kinds |= bitURLCredential
			}
		}
	}
}

// generic applies the rules for objects of every kind to the value of key k.
// handled is true when the value was dealt with (it is not walked further).
func (w *walker) generic(k string, val any) (out any, handled bool) {
	switch x := val.(type) {
	case []any:
		switch k {
		case "env":
			w.redactEnv(x)
		case "httpHeaders":
			w.redactHeaders(x)
		}
	case map[string]any:
		if k == "annotations" {
			w.redactAnnotations(x)
			return x, true
		}
	case string:
		if x == "" || x == Marker {
			return x, true
		}
		if w.keys && isCredentialKey(k) {
			w.kinds |= bitCredentialKey
			return Marker, true
		}
		if red, ok := w.s.maskURL(x); ok {
			w.kinds |= bitURLCredential
			return red, true
		}
		if w.text {
			if red, ok := w.s.maskText(x); ok {
				w.kinds |= bitCredentialText
				return red, true
			}
		}
		return x, true
	}
	return val, false
}

// maskConfigMapValue masks credential lines in a ConfigMap data value, or
// replaces a binaryData value whole when its decoded content holds one (the
// masked text would no longer be the file it was).
func (s *Sanitizer) maskConfigMapValue(v string, binary bool) (string, bool) {
	if !binary {
		return s.maskText(v)
	}
	dec, err := base64.StdEncoding.DecodeString(v)
	if err != nil || !bytes.ContainsAny(dec, "=:-") {
		return v, false
	}
	if _, changed := s.maskText(string(dec)); changed {
		return MarkerBase64, true
	}
	return v, false
}

// plainNeedles are byte sequences without which a body of a kind that has
// no secret data cannot hold anything the generic rules mask; a body with
// none of them is not parsed, which keeps the common case at a few scans.
var plainNeedles = [][]byte{[]byte(`env`), []byte(`httpHeaders`), []byte(`-snippet`), []byte(`://`)}

func mayNeedGeneric(raw []byte) bool {
	for _, n := range plainNeedles {
		if bytes.Contains(raw, n) {
			return true
		}
	}
	return false
}

// applyEvent masks credential patterns in the free text of an Event (core
// message, events.k8s.io note): kubelet and controllers quote command lines,
// probe output and image pull errors there, and people quote
// password=/token= lines. Everything else of an Event is kept.
func (s *Sanitizer) applyEvent(rec *record.Record) error {
	if !s.redact {
		return nil
	}
	changed := false
	if ev := rec.CoreEvent; ev != nil {
		ev.Message, changed = s.maskText(ev.Message)
	} else if ev := rec.Event; ev != nil {
		ev.Note, changed = s.maskText(ev.Note)
	}
	if !changed {
		return nil
	}
	s.redacted.WithLabelValues(KindCredentialText).Inc()
	if !slices.Contains(rec.Flags.Redacted, KindCredentialText) {
		rec.Flags.Redacted = append(rec.Flags.Redacted, KindCredentialText)
		slices.Sort(rec.Flags.Redacted)
	}
	if err := rec.SyncObject(); err != nil {
		return fmt.Errorf("redaction: re-encode %s: %w", rec.ID, err)
	}
	return nil
}
