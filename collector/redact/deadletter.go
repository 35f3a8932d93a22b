package redact

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/config"
)

// DeadLetter is the one way a source makes a dead letter safe to keep: its
// Data goes through ScrubDeadLetter and its Error text, which can quote the
// input, has every credential pattern masked. Every source builds its dead
// letters through it (TestSourcesScrubDeadLetters guards the call sites). A
// nil Sanitizer stands for the default configuration, so a source that was
// given none still never keeps a dead letter unredacted.
func (s *Sanitizer) DeadLetter(dl collector.DeadLetter) collector.DeadLetter {
	if s == nil {
		s = Default()
	}
	dl.Data = s.ScrubDeadLetter(dl.Data)
	if s.redact {
		dl.Error, _ = s.maskText(dl.Error)
	}
	return dl
}

// Default is the Sanitizer of the default configuration, without metrics,
// for a source that was given none: what it redacts is never less than a
// configured one would.
var Default = sync.OnceValue(func() *Sanitizer {
	c := config.Default().Collector
	s, err := New(c.Redaction, c.Size, c.DeadLetterMaxBytes, nil, slog.Default())
	if err != nil {
		panic(fmt.Sprintf("redact: the default configuration does not compile: %v", err)) // a programming error, caught by every test
	}
	return s
})

// ScrubDeadLetter returns what may be kept of a dead letter's data (a
// malformed line, a bad list item, the head of an oversized request): with
// redaction on, secret material is removed as well as the input's shape
// allows, then the result is cut to the dead-letter limit. The result never
// aliases data.
//
// Valid JSON that was rejected for a field (the common case) is redacted by
// the same rules as records, judged per object: an object with
// requestObject/responseObject by its objectRef or requestURI, a bare
// Secret, ConfigMap, TokenRequest or TokenReview by its kind; a body whose
// resource cannot be told is removed. Every other object (a Pod, a core
// Event, an unknown kind) gets the generic rules plus two that only dead
// letters get: a string under a credential-like key is masked, and
// credential patterns in any other string are masked (see maskText). AKS
// wrappers holding the event as a JSON string are opened; GKE
// request/response payloads are removed.
//
// Anything else (a truncated or garbled line) has no structure to go by: it
// is kept only as its length, its SHA-256 and its first unparsableHead
// bytes, cut before the first body or data field, with every credential
// pattern masked.
func (s *Sanitizer) ScrubDeadLetter(data []byte) []byte {
	out, changed := data, false
	if s.redact {
		out, changed = s.scrub(data)
	}
	if len(out) > s.deadMax {
		out, changed = out[:s.deadMax], true
	}
	if changed {
		s.dlScrubbed.Inc()
	}
	return bytes.Clone(out)
}

// rawCutMarks start the parts of an unparsable document that may hold secret
// material, plain and as they appear inside a JSON-string-encoded event.
var rawCutMarks = [][]byte{
	[]byte(`"requestObject"`), []byte(`\"requestObject\"`),
	[]byte(`"responseObject"`), []byte(`\"responseObject\"`),
	[]byte(`"request"`), []byte(`\"request\"`),
	[]byte(`"response"`), []byte(`\"response\"`),
	[]byte(`"data"`), []byte(`\"data\"`),
	[]byte(`"stringData"`), []byte(`\"stringData\"`),
	[]byte(`"binaryData"`), []byte(`\"binaryData\"`),
	[]byte(`"token"`), []byte(`\"token\"`),
	[]byte(LastAppliedAnnotation),
}

// cutNotice ends data that was cut before a body.
const cutNotice = `…[kubesift: cut before possible secret material]`

// unparsableHead is how much of an unparsable dead letter is kept: enough
// to tell what the input was (its first fields) and where it came from.
const unparsableHead = 256

// scrub redacts data (see ScrubDeadLetter); changed reports whether the
// result differs from data.
func (s *Sanitizer) scrub(data []byte) (out []byte, changed bool) {
	if v, err := parseJSON(data); err == nil {
		v = s.scrubValue(v, 0, &changed)
		if !changed {
			return data, false
		}
		if out, err := encodeJSON(v); err == nil {
			return out, true
		}
		return []byte(cutNotice), true
	}
	return s.summarize(data), true
}

// summarize keeps an unparsable dead letter as its length, hash and masked
// head. The head is masked before it is cut to unparsableHead, so a
// credential that straddles the cut is still recognised whole.
func (s *Sanitizer) summarize(data []byte) []byte {
	head := data
	for _, m := range rawCutMarks {
		if i := bytes.Index(head, m); i >= 0 {
			head = head[:i]
		}
	}
	cut := len(head) < len(data)
	if len(head) > 4*unparsableHead {
		head = head[:4*unparsableHead]
	}
	masked, _ := s.maskText(string(head))
	if len(masked) > unparsableHead {
		masked, cut = masked[:unparsableHead], true
		for !utf8.ValidString(masked) && len(masked) > unparsableHead-utf8.UTFMax {
			masked = masked[:len(masked)-1]
		}
	}
	if cut {
		masked += cutNotice
	}
	// The head first, so the dead letter still starts as the input did.
	sum := sha256.Sum256(data)
	return fmt.Appendf(nil, "%s [kubesift: unparsable input of %d bytes, sha256 %s]", masked, len(data), hex.EncodeToString(sum[:]))
}

// scrubValue redacts a parsed dead letter in place (maps and slices) and
// returns it; *changed is set when anything was touched.
func (s *Sanitizer) scrubValue(v any, depth int, changed *bool) any {
	if depth > 64 {
		*changed = true
		return Marker
	}
	switch x := v.(type) {
	case []any:
		for i := range x {
			x[i] = s.scrubValue(x[i], depth+1, changed)
		}
	case map[string]any:
		s.scrubObject(x, depth, changed)
	case string:
		w := walker{s: s, kind: bodyPlain, keys: true, text: true}
		out, _ := w.generic("", x)
		if w.kinds != 0 {
			*changed = true
		}
		return out
	}
	return v
}

func (s *Sanitizer) scrubObject(m map[string]any, depth int, changed *bool) {
	if uri, ok := m["requestURI"].(string); ok {
		if red, ok := s.redactURI(uri); ok {
			m["requestURI"] = red
			*changed = true
		}
	}
	_, hasReq := m["requestObject"]
	_, hasResp := m["responseObject"]
	if hasReq || hasResp {
		var resource, sub string
		if ref, ok := m["objectRef"].(map[string]any); ok {
			resource, _ = ref["resource"].(string)
			sub, _ = ref["subresource"].(string)
		} else if uri, ok := m["requestURI"].(string); ok {
			resource, sub = resourceFromURI(uri)
		}
		bk := classify(resource, sub)
		for _, key := range []string{"requestObject", "responseObject"} {
			body, ok := m[key]
			if !ok || body == nil {
				continue
			}
			if resource == "" {
				delete(m, key) // cannot tell what it is: do not keep it
				*changed = true
				continue
			}
			w := walker{s: s, kind: bk, keys: bk == bodyPlain, text: bk == bodyPlain}
			m[key] = w.top(body)
			if w.kinds != 0 {
				*changed = true
			}
		}
	}
	kind, _ := m["kind"].(string)
	bk := bodyPlain
	switch strings.TrimSuffix(kind, "List") {
	case "Secret":
		bk = bodySecret
	case "ConfigMap":
		bk = bodyConfigMap
	case "TokenRequest":
		bk = bodyTokenRequest
	case "TokenReview":
		bk = bodyTokenReview
	}
	if bk != bodyPlain {
		w := walker{s: s, kind: bk}
		w.walk(m)
		if w.kinds != 0 {
			*changed = true
		}
		return
	}
	if pp, ok := m["protoPayload"].(map[string]any); ok { // GKE
		for _, key := range []string{"request", "response"} {
			if _, ok := pp[key]; ok {
				delete(pp, key)
				*changed = true
			}
		}
	}
	for k, val := range m {
		if k == "requestObject" || k == "responseObject" {
			continue
		}
		if str, ok := val.(string); ok && k == "log" && strings.HasPrefix(strings.TrimSpace(str), "{") {
			// AKS: the event as a JSON string.
			if inner, err := parseJSON([]byte(str)); err == nil {
				c := false
				inner = s.scrubValue(inner, depth+1, &c)
				if c {
					if out, err := encodeJSON(inner); err == nil {
						m[k] = string(out)
					} else {
						m[k] = Marker
					}
					*changed = true
				}
			} else if red, c := s.scrub([]byte(str)); c {
				m[k] = string(red)
				*changed = true
			}
			continue
		}
		w := walker{s: s, kind: bodyPlain, keys: true, text: true}
		if out, handled := w.generic(k, val); handled {
			m[k] = out
		} else {
			m[k] = s.scrubValue(val, depth+1, changed)
		}
		if w.kinds != 0 {
			*changed = true
		}
	}
}
