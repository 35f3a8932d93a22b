// Package redact prepares records before they leave the collector: it
// removes secret material from audit events (redaction) and drops the bodies
// of audit events that are too large (size policy).
//
// # What is redacted
//
// Redaction is on by default. A value is replaced by the marker "REDACTED"
// (fields that hold base64, such as Secret data, get base64("REDACTED") =
// "UkVEQUNURUQ=", so the object still decodes as its Kubernetes type); keys
// and every other field are kept, so rules can still see which keys of which
// Secret changed. record.Flags.Redacted lists the kinds applied; the table
// of every rule, with its false positives, is docs/redaction.md.
//
// For Secrets, ConfigMaps, TokenRequests and TokenReviews:
//
//   - secret-data: values of data and stringData of Secrets in request and
//     response objects — single objects, lists (SecretList), Tables, merge
//     and strategic-merge patches and JSON patches (a JSON patch op is
//     judged by its path, e.g. /data/password).
//   - secret-last-applied: the kubectl.kubernetes.io/last-applied-configuration
//     annotation of Secrets (it holds the Secret as applied, data included).
//   - configmap-credential: ConfigMap data/binaryData values whose key
//     matches one of the configured patterns (compiled once, matched
//     case-insensitively), also inside the ConfigMap's last-applied
//     annotation, which is re-encoded with those values redacted.
//   - configmap-content: ConfigMap values whose content holds credentials
//     (a credentials INI, a .env file, YAML/JSON/properties lines with a
//     credential-like name, AWS key ids, PEM private keys, JWTs): only the
//     value parts are masked in data; a binaryData value is replaced whole.
//   - token-request: status.token of TokenRequests (serviceaccounts/token).
//   - token-review: spec.token of TokenReviews (request and response).
//
// For objects of every kind (rules in shapes.go):
//
//   - env-value: values of credential-named container env entries
//     (isCredentialName) in any pod spec or template, and the password of a
//     connection string under any name; valueFrom is kept.
//   - http-header: credential headers (Authorization, Cookie, X-Api-Key, …)
//     in httpGet.httpHeaders of probes and lifecycle handlers.
//   - annotation-snippet: *-snippet annotations (ingress-nginx pastes them
//     into its configuration), whole.
//   - url-credential: URL passwords (scheme://user:password@) and
//     credential query parameters in annotations and string fields.
//   - credential-text: credential patterns in an Event's message or note.
//   - uri-query: values of credential-like query parameters in requestURI
//     (?token=, ?jwt=, ?X-Amz-Signature=, … plus configured extras).
//   - body-dropped: a request/response body of one of the secret-bearing
//     resources that could not be parsed as JSON was removed whole rather
//     than published unredacted.
//
// The last-applied annotation of any object is redacted by the same rules.
// Dead letters go through Sanitizer.DeadLetter (deadletter.go), which adds
// credential-key (any string under a credential-like key) and
// credential-text (credential patterns in any string) for kinds whose shape
// is not known.
//
// # Cost
//
// Most audit records carry no request/response object, and most of those
// that do are not of a sensitive resource. Apply decides from objectRef
// (resource, subresource) first and parses runtime.Unknown.Raw always for
// secrets, configmaps, serviceaccounts/token, tokenreviews and events, and
// for any other resource only when the body contains one of a few byte
// sequences the generic rules need (env, httpHeaders, -snippet, ://); the
// requestURI check is a scan for '?'. A record that needed no change keeps
// its verbatim Object (no re-encoding). BenchmarkDecodeApply measures it.
//
// # Size policy
//
// An audit record whose encoded envelope would exceed max_record_bytes keeps
// its metadata and loses requestObject and responseObject
// (record.Flags.Truncated). One still too large (a requestURI of a megabyte
// needs no body) has its longest strings cut to fit, each cut field listed
// with its original size in the annotation TruncatedFieldsAnnotation
// (fit.go). Events are never cut; a record that cannot be made to fit is
// logged and published as it is, and the publisher dead-letters it.
package redact

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/record"
)

// Kinds of redaction: the values of record.Flags.Redacted and of the "kind"
// label of kubesift_collector_redacted_total.
const (
	KindSecretData          = "secret-data"
	KindSecretLastApplied   = "secret-last-applied"
	KindConfigMapCredential = "configmap-credential"
	KindTokenRequest        = "token-request"
	KindTokenReview         = "token-review"
	KindURIQuery            = "uri-query"
	KindBodyDropped         = "body-dropped"
	KindEnvValue            = "env-value"
	KindHTTPHeader          = "http-header"
	KindAnnotationSnippet   = "annotation-snippet"
	KindURLCredential       = "url-credential"
	KindConfigMapContent    = "configmap-content"
	KindCredentialKey       = "credential-key"
	KindCredentialText      = "credential-text"
)

// Marker replaces a redacted string value.
const Marker = "REDACTED"

// MarkerBase64 replaces a redacted value of a base64 field (Secret data,
// ConfigMap binaryData).
var MarkerBase64 = base64.StdEncoding.EncodeToString([]byte(Marker))

// LastAppliedAnnotation is the annotation kubectl apply keeps the applied
// object in.
const LastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// DefaultQueryParams are the requestURI query parameters whose values are
// always redacted (compared case-insensitively).
var DefaultQueryParams = []string{
	"token", "access_token", "id_token", "refresh_token", "bearer", "auth", "authorization",
	"password", "passwd", "pwd", "secret", "client_secret", "api_key", "apikey",
	"key", "jwt", "sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token",
}

// kindSet is a small bit set of redaction kinds.
type kindSet uint16

const (
	bitSecretData kindSet = 1 << iota
	bitSecretLastApplied
	bitConfigMapCredential
	bitTokenRequest
	bitTokenReview
	bitURIQuery
	bitBodyDropped
	bitEnvValue
	bitHTTPHeader
	bitAnnotationSnippet
	bitURLCredential
	bitConfigMapContent
	bitCredentialKey
	bitCredentialText
)

var kindNames = []struct {
	bit  kindSet
	name string
}{
	{bitAnnotationSnippet, KindAnnotationSnippet},
	{bitBodyDropped, KindBodyDropped},
	{bitConfigMapContent, KindConfigMapContent},
	{bitConfigMapCredential, KindConfigMapCredential},
	{bitCredentialKey, KindCredentialKey},
	{bitCredentialText, KindCredentialText},
	{bitEnvValue, KindEnvValue},
	{bitHTTPHeader, KindHTTPHeader},
	{bitSecretData, KindSecretData},
	{bitSecretLastApplied, KindSecretLastApplied},
	{bitTokenRequest, KindTokenRequest},
	{bitTokenReview, KindTokenReview},
	{bitURIQuery, KindURIQuery},
	{bitURLCredential, KindURLCredential},
} // sorted by name, so Flags.Redacted comes out sorted

func (k kindSet) names() []string {
	var out []string
	for _, kn := range kindNames {
		if k&kn.bit != 0 {
			out = append(out, kn.name)
		}
	}
	return out
}

// Sanitizer applies redaction and the size policy. It is safe for concurrent
// use by several sources.
type Sanitizer struct {
	redact     bool
	cmKey      *regexp.Regexp // nil: no ConfigMap key is a credential
	params     []string       // lower-case query parameter names
	paramsRe   *regexp.Regexp // the same names, for scrubbing unparsable dead letters
	maxRecord  int
	deadMax    int
	redacted   *prometheus.CounterVec
	truncated  prometheus.Counter
	oversize   prometheus.Counter
	dlScrubbed prometheus.Counter
	fitM       fitMetrics
	log        *slog.Logger
	lastLog    atomic.Int64 // unix nanos of the last size-policy log line
	// secretKindsOnly turns the generic rules off (bodies of Secrets,
	// ConfigMaps, TokenRequests and TokenReviews only): the baseline the
	// benchmarks measure the generic rules' cost against. Never set
	// outside them.
	secretKindsOnly bool
}

// New builds a Sanitizer. The ConfigMap key patterns are compiled here, once,
// into one case-insensitive alternation. deadLetterMax caps the bytes
// ScrubDeadLetter returns. Metrics are registered on reg (nil: not
// registered); log receives the size policy's notices (nil: slog.Default()).
func New(rc config.RedactionConfig, sc config.SizeConfig, deadLetterMax int, reg prometheus.Registerer, log *slog.Logger) (*Sanitizer, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Sanitizer{
		log:       log.With("component", "redact"),
		redact:    rc.Enabled,
		maxRecord: sc.MaxRecordBytes,
		deadMax:   deadLetterMax,
		fitM:      newFitMetrics(),
		redacted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_collector_redacted_total",
			Help: "Records redacted before publishing, by kind of redaction (a record can count under several kinds).",
		}, []string{"kind"}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubesift_collector_truncated_total",
			Help: "Audit records whose request/response bodies were dropped by the size policy.",
		}),
		oversize: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubesift_collector_oversize_total",
			Help: "Records still over max_record_bytes after the size policy (published as they are).",
		}),
		dlScrubbed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubesift_collector_dead_letters_scrubbed_total",
			Help: "Dead letters whose data was redacted or cut before publishing.",
		}),
	}
	if s.maxRecord <= 0 {
		s.maxRecord = 1 << 20
	}
	if s.deadMax <= 0 {
		s.deadMax = 64 << 10
	}
	if len(rc.ConfigMapKeyPatterns) > 0 {
		alts := make([]string, len(rc.ConfigMapKeyPatterns))
		for i, p := range rc.ConfigMapKeyPatterns {
			if _, err := regexp.Compile(p); err != nil {
				return nil, fmt.Errorf("redaction: configmap_key_patterns[%d]: %w", i, err)
			}
			alts[i] = "(?:" + p + ")"
		}
		re, err := regexp.Compile("(?i)" + strings.Join(alts, "|"))
		if err != nil {
			return nil, fmt.Errorf("redaction: configmap_key_patterns: %w", err)
		}
		s.cmKey = re
	}
	seen := map[string]bool{}
	for _, p := range append(slices.Clone(DefaultQueryParams), rc.ExtraQueryParams...) {
		p = strings.ToLower(p)
		if p == "" || seen[p] {
			continue
		}
		seen[p] = true
		s.params = append(s.params, p)
	}
	quoted := make([]string, len(s.params))
	for i, p := range s.params {
		quoted[i] = regexp.QuoteMeta(p)
	}
	// For dead letters that are not valid JSON: a parameter at the start, or
	// introduced by ?, &, white space or the JSON escape \u0026, its value up
	// to the next separator.
	s.paramsRe = regexp.MustCompile(`(?i)((?:^|[?&\s]|\\u0026)(?:` + strings.Join(quoted, "|") + `)=)[^&"\\\s]*`)
	if err := obs.Register(reg, append(s.fitM.collectors(), s.redacted, s.truncated, s.oversize, s.dlScrubbed)...); err != nil {
		return nil, fmt.Errorf("redaction: register metrics: %w", err)
	}
	for _, kn := range kindNames {
		s.redacted.WithLabelValues(kn.name) // export every kind at 0
	}
	return s, nil
}

// Enabled reports whether redaction is on.
func (s *Sanitizer) Enabled() bool { return s.redact }

// Apply redacts rec (when redaction is enabled) and applies the size policy,
// re-encoding rec.Object from the typed view only when something changed. On
// error the record must not be published: it could not be re-encoded, so its
// Object may still hold what should have been redacted.
func (s *Sanitizer) Apply(rec *record.Record) error {
	if rec.Source == record.SourceObject {
		return s.applyObject(rec) // object.go
	}
	ev := rec.Audit
	if ev == nil {
		return s.applyEvent(rec) // Events carry no bodies: no size policy either
	}
	changed := false
	if s.redact {
		kinds := s.redactEvent(ev)
		if kinds != 0 {
			changed = true
			s.flagKinds(rec, kinds)
		}
	}
	if changed {
		if err := rec.SyncObject(); err != nil {
			// Should not happen (every Raw we wrote is valid JSON). Never
			// publish what might still hold a secret: drop the bodies.
			ev.RequestObject, ev.ResponseObject = nil, nil
			if err2 := rec.SyncObject(); err2 != nil {
				return fmt.Errorf("redaction: re-encode %s: %w", rec.ID, errors.Join(err, err2))
			}
		}
	}
	if size := s.estimate(rec); size > s.maxRecord {
		if ev.RequestObject == nil && ev.ResponseObject == nil {
			return s.fitOrNotice(rec, size)
		}
		ev.RequestObject, ev.ResponseObject = nil, nil
		rec.Flags.Truncated = true
		s.truncated.Inc()
		if err := rec.SyncObject(); err != nil {
			return fmt.Errorf("size policy: re-encode %s: %w", rec.ID, err)
		}
		if after := s.estimate(rec); after > s.maxRecord {
			return s.fitOrNotice(rec, after)
		}
		s.notice("audit record over max_record_bytes: request/response bodies dropped (flags.truncated)", rec, size)
	}
	return nil
}

// fitOrNotice cuts the strings of a record still over max_record_bytes
// (fit.go); one that cannot be made to fit is published as it is, and the
// publisher dead-letters it.
func (s *Sanitizer) fitOrNotice(rec *record.Record, size int) error {
	fit, what, where := s.fit, "audit record over max_record_bytes without bodies to drop", "annotation "
	if rec.Source == record.SourceObject {
		fit, what, where = s.fitObject, "object record over max_record_bytes", "the object's annotation "
	}
	ok, err := fit(rec, size)
	switch {
	case err != nil:
		return err
	case ok:
		s.notice(what+": longest strings cut to fit (flags.truncated, "+where+TruncatedFieldsAnnotation+")", rec, size)
	default:
		s.oversize.Inc()
		s.notice(what+" and cannot be cut to fit; published as it is (the publisher dead-letters it)", rec, size)
	}
	return nil
}

// notice logs a size-policy action at most every 10 s (the counters count
// every one).
func (s *Sanitizer) notice(msg string, rec *record.Record, size int) {
	now := time.Now().UnixNano()
	last := s.lastLog.Load()
	if now-last < int64(10*time.Second) || !s.lastLog.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn(msg, "id", rec.ID, "estimated_bytes", size, "max_record_bytes", s.maxRecord)
}

// estimate is an upper bound of len(record.Marshal(rec)) that costs no
// encoding: the object plus the envelope's fields and field names.
func (s *Sanitizer) estimate(rec *record.Record) int {
	n := len(rec.Object) + 256 + len(rec.ID) + len(rec.Key) + len(rec.Cluster.Name) + len(rec.Cluster.UID) + len(rec.APIVersion)
	for _, k := range rec.Flags.Redacted {
		n += len(k) + 3
	}
	if n > s.maxRecord/2 {
		// json.Marshal escapes <, > and & in the embedded object (6 bytes
		// each); only worth counting near the limit.
		n += 5 * (bytes.Count(rec.Object, []byte{'<'}) + bytes.Count(rec.Object, []byte{'>'}) + bytes.Count(rec.Object, []byte{'&'}))
	}
	return n
}

// bodyKind says how the bodies of a request are treated.
type bodyKind uint8

const (
	bodyPlain bodyKind = iota
	bodySecret
	bodyConfigMap
	bodyTokenRequest
	bodyTokenReview
	bodyEvent
)

// classify decides from the resource alone whether a request's bodies can
// hold secret material. The API group is not checked: a resource of the same
// name in another group is redacted too, which errs on the safe side.
func classify(resource, subresource string) bodyKind {
	switch resource {
	case "secrets":
		return bodySecret
	case "configmaps":
		return bodyConfigMap
	case "serviceaccounts":
		if subresource == "token" {
			return bodyTokenRequest
		}
	case "tokenreviews":
		return bodyTokenReview
	case "events":
		return bodyEvent
	}
	return bodyPlain
}

// resourceFromURI finds resource and subresource in an API request path
// (/api/v1/namespaces/ns/secrets/name, /apis/g/v/res, …), for events
// without objectRef.
func resourceFromURI(uri string) (resource, subresource string) {
	if i := strings.IndexAny(uri, "?#"); i >= 0 {
		uri = uri[:i]
	}
	parts := strings.Split(strings.Trim(uri, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return "", ""
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) != 2 {
		parts = parts[2:] // namespaced resource; /namespaces/x alone is the namespace itself
	}
	if len(parts) == 0 {
		return "", ""
	}
	if len(parts) >= 3 {
		return parts[0], parts[2]
	}
	return parts[0], ""
}

// redactEvent edits ev in place and returns the kinds applied.
func (s *Sanitizer) redactEvent(ev *auditv1.Event) kindSet {
	var kinds kindSet
	if uri, ok := s.redactURI(ev.RequestURI); ok {
		ev.RequestURI = uri
		kinds |= bitURIQuery
	}
	if ev.RequestObject == nil && ev.ResponseObject == nil {
		return kinds
	}
	var bk bodyKind
	if ev.ObjectRef != nil {
		bk = classify(ev.ObjectRef.Resource, ev.ObjectRef.Subresource)
	} else {
		bk = classify(resourceFromURI(ev.RequestURI))
	}
	if s.secretKindsOnly && (bk == bodyPlain || bk == bodyEvent) {
		return kinds
	}
	for _, u := range []*runtime.Unknown{ev.RequestObject, ev.ResponseObject} {
		if u == nil || (bk == bodyPlain && !mayNeedGeneric(u.Raw)) {
			continue
		}
		raw, k := s.redactBody(bk, u.Raw)
		if k != 0 {
			u.Raw = raw
			u.ContentType = runtime.ContentTypeJSON
			kinds |= k
		}
	}
	// A body that could not be parsed is dropped rather than published.
	if ev.RequestObject != nil && ev.RequestObject.Raw == nil {
		ev.RequestObject = nil
	}
	if ev.ResponseObject != nil && ev.ResponseObject.Raw == nil {
		ev.ResponseObject = nil
	}
	return kinds
}

// redactBody parses raw, redacts it as a body of kind bk and returns the
// re-encoded JSON and the kinds applied (0: unchanged, raw returned as is).
// An unparsable body comes back nil with bitBodyDropped.
func (s *Sanitizer) redactBody(bk bodyKind, raw []byte) ([]byte, kindSet) {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return raw, 0
	}
	v, err := parseJSON(raw)
	if err != nil {
		if bk == bodyPlain {
			// Nothing of a plain kind is known to be secret: an
			// unparsable body is left as the decoder accepted it.
			return raw, 0
		}
		return nil, bitBodyDropped
	}
	w := walker{s: s, kind: bk}
	v = w.top(v)
	if w.kinds == 0 {
		return raw, 0
	}
	out, err := encodeJSON(v)
	if err != nil {
		return nil, bitBodyDropped
	}
	return out, w.kinds
}

func parseJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep numbers exactly as they were
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

func encodeJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// walker redacts one parsed body in place.
type walker struct {
	s     *Sanitizer
	kind  bodyKind
	kinds kindSet
	depth int
	// keys masks every string value under a credential-like key, and text
	// masks credential patterns in every other string: both for dead letters
	// of kinds whose shape is not known, where a false positive costs
	// nothing a rule needs.
	keys, text bool
}

// maxDepth bounds the recursion on hostile input; encoding/json already
// refuses nesting deeper than 10000, the walker stops much earlier and
// treats what lies deeper as one opaque value to redact.
const maxDepth = 200

// top handles the document level: a JSON patch (an array of operations) is
// redacted op by op, anything else is walked.
func (w *walker) top(v any) any {
	if ops, ok := v.([]any); ok && isJSONPatch(ops) {
		for _, o := range ops {
			op := o.(map[string]any)
			val, has := op["value"]
			if !has {
				continue
			}
			path, _ := op["path"].(string)
			op["value"] = w.reroot(path, val)
		}
		return v
	}
	return w.walk(v)
}

func isJSONPatch(ops []any) bool {
	if len(ops) == 0 {
		return false
	}
	for _, o := range ops {
		m, ok := o.(map[string]any)
		if !ok {
			return false
		}
		if _, ok := m["op"].(string); !ok {
			return false
		}
	}
	return true
}

// reroot redacts the value of a JSON patch op as if it stood at its path in
// a whole object: "/data/password" → {"data":{"password":value}} is walked,
// and the (possibly replaced) value is taken back out. So one set of rules
// serves objects, merge patches and JSON patches.
func (w *walker) reroot(path string, val any) any {
	toks := pointerTokens(path)
	if len(toks) == 0 {
		return w.walk(val)
	}
	root := map[string]any{}
	cur := root
	for _, t := range toks[:len(toks)-1] {
		m := map[string]any{}
		cur[t] = m
		cur = m
	}
	last := toks[len(toks)-1]
	cur[last] = val
	w.walk(root)
	cur = root
	for _, t := range toks[:len(toks)-1] {
		next, ok := cur[t].(map[string]any)
		if !ok {
			// The walker replaced a value that contains this op's target
			// (e.g. a credential key above it): the whole value is redacted.
			return Marker
		}
		cur = next
	}
	return cur[last]
}

// pointerTokens splits an RFC 6901 JSON pointer into unescaped tokens.
func pointerTokens(p string) []string {
	if p == "" || p == "/" {
		return nil
	}
	toks := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, t := range toks {
		if strings.Contains(t, "~") {
			toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
		}
	}
	return toks
}

// walk redacts v according to w.kind and returns it (a replaced leaf comes
// back as the marker). Maps and slices are edited in place.
func (w *walker) walk(v any) any {
	w.depth++
	defer func() { w.depth-- }()
	if w.depth > maxDepth {
		// Deeper than any Kubernetes object: do not trust what is inside.
		w.kinds |= bitBodyDropped
		return Marker
	}
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			x[k] = w.field(k, val)
		}
	case []any:
		for i, val := range x {
			if out, handled := w.generic("", val); handled {
				x[i] = out
			} else {
				x[i] = w.walk(val)
			}
		}
	}
	return v
}

// field redacts the value of key k of some object.
func (w *walker) field(k string, val any) any {
	switch w.kind {
	case bodySecret:
		switch k {
		case "data":
			if w.redactAll(val, MarkerBase64) {
				w.kinds |= bitSecretData
				return val
			}
		case "stringData":
			if w.redactAll(val, Marker) {
				w.kinds |= bitSecretData
				return val
			}
		case "annotations":
			if m, ok := val.(map[string]any); ok {
				if la, ok := m[LastAppliedAnnotation]; ok && la != Marker {
					m[LastAppliedAnnotation] = Marker
					w.kinds |= bitSecretLastApplied
				}
				return val
			}
		}
	case bodyConfigMap:
		switch k {
		case "data", "binaryData":
			if m, ok := val.(map[string]any); ok {
				marker := Marker
				if k == "binaryData" {
					marker = MarkerBase64
				}
				for key, v := range m {
					if w.s.isCredentialKey(key) && v != marker {
						m[key] = marker
						w.kinds |= bitConfigMapCredential
					} else if str, ok := v.(string); ok {
						if out, changed := w.s.maskConfigMapValue(str, k == "binaryData"); changed {
							m[key] = out
							w.kinds |= bitConfigMapContent
						}
					}
				}
				return val
			}
		case "annotations":
			if m, ok := val.(map[string]any); ok {
				if la, ok := m[LastAppliedAnnotation].(string); ok {
					if out, changed := w.s.redactConfigMapLastApplied(la); changed {
						m[LastAppliedAnnotation] = out
						w.kinds |= bitConfigMapCredential
					}
				}
				return val
			}
		}
	case bodyEvent:
		if k == "message" || k == "note" {
			if str, ok := val.(string); ok {
				if out, changed := w.s.maskText(str); changed {
					w.kinds |= bitCredentialText
					return out
				}
			}
		}
	case bodyTokenRequest, bodyTokenReview:
		if k == "token" {
			if s, ok := val.(string); ok && s != "" && s != Marker {
				if w.kind == bodyTokenRequest {
					w.kinds |= bitTokenRequest
				} else {
					w.kinds |= bitTokenReview
				}
				return Marker
			}
		}
	}
	if w.s.secretKindsOnly {
		return w.walk(val)
	}
	if out, handled := w.generic(k, val); handled {
		return out
	}
	return w.walk(val)
}

// redactAll replaces every value of a map with marker; it reports whether val
// was a map (a non-map "data" is walked like any other field).
func (w *walker) redactAll(val any, marker string) bool {
	m, ok := val.(map[string]any)
	if !ok {
		return false
	}
	for k := range m {
		m[k] = marker
	}
	return true
}

// redactConfigMapLastApplied redacts credential keys inside the JSON of a
// ConfigMap's last-applied annotation. An annotation that is not JSON is
// replaced whole: it cannot be checked.
func (s *Sanitizer) redactConfigMapLastApplied(la string) (string, bool) {
	if la == Marker {
		return la, false
	}
	v, err := parseJSON([]byte(la))
	if err != nil {
		return Marker, true
	}
	w := walker{s: s, kind: bodyConfigMap}
	v = w.top(v)
	if w.kinds == 0 {
		return la, false
	}
	out, err := encodeJSON(v)
	if err != nil {
		return Marker, true
	}
	return string(out), true
}

func (s *Sanitizer) isCredentialKey(k string) bool {
	return s.cmKey != nil && s.cmKey.MatchString(k)
}

func (s *Sanitizer) isSensitiveParam(name string) bool {
	for _, p := range s.params {
		if strings.EqualFold(name, p) {
			return true
		}
	}
	return false
}

// redactURI replaces the values of sensitive query parameters, keeping the
// rest of the URI byte for byte. ok is false (and uri returned as is) when
// nothing was redacted, which is almost always and costs one IndexByte.
func (s *Sanitizer) redactURI(uri string) (string, bool) {
	q := strings.IndexByte(uri, '?')
	if q < 0 {
		return uri, false
	}
	var b []byte // nil until the first redaction
	copied := 0  // uri[:copied] is in b
	for i := q + 1; i <= len(uri); {
		end := strings.IndexByte(uri[i:], '&')
		if end < 0 {
			end = len(uri)
		} else {
			end += i
		}
		key, val, hasVal := strings.Cut(uri[i:end], "=")
		name := key
		if strings.ContainsAny(name, "%+") {
			if k, err := url.QueryUnescape(name); err == nil {
				name = k
			}
		}
		if hasVal && val != "" && val != Marker && s.isSensitiveParam(name) {
			if b == nil {
				b = make([]byte, 0, len(uri))
			}
			valStart := i + len(key) + 1
			b = append(b, uri[copied:valStart]...)
			b = append(b, Marker...)
			copied = end
		}
		i = end + 1
	}
	if b == nil {
		return uri, false
	}
	return string(append(b, uri[copied:]...)), true
}
