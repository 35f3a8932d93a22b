package redact

import (
	"bytes"
	"slices"
	"strings"
)

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
// resource cannot be told is removed. AKS wrappers holding the event as a
// JSON string are opened; GKE request/response payloads are removed.
// Anything else (a truncated or garbled line) has no structure to go by: it is
// cut before the first body or data field and credential-like query
// parameters are blanked.
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
	cut := len(data)
	for _, m := range rawCutMarks {
		if i := bytes.Index(data, m); i >= 0 && i < cut {
			cut = i
		}
	}
	out = data[:cut:cut]
	if cut < len(data) {
		out = append(slices.Clone(out), cutNotice...)
	}
	out = s.paramsRe.ReplaceAll(out, []byte("${1}"+Marker))
	return out, !bytes.Equal(out, data)
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
			if bk != bodyPlain {
				w := walker{s: s, kind: bk}
				m[key] = w.top(body)
				if w.kinds != 0 {
					*changed = true
				}
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
		m[k] = s.scrubValue(val, depth+1, changed)
	}
}
