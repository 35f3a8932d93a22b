package ecs

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	jsoniter "github.com/json-iterator/go"
)

// Field is one mapped field below kubernetes.audit.requestObject and
// .responseObject. Elastic's integration maps both objects with
// dynamic: false and a short list of typed fields (the ones its prebuilt
// rules query); kubesift does the same with a superset of that list, so the
// rest of a body is kept in _source (readable in Discover and by the
// notifier) without ever growing or conflicting with the mapping.
type Field struct {
	Path string // dotted, relative to the object
	Type string // keyword | text | boolean | long | flattened
}

// BodyFields are the typed fields of request and response objects. Types
// follow elastic/integrations packages/kubernetes/data_stream/audit_logs/
// fields/fields.yml where it maps the field (image and paths are text
// there), keyword otherwise.
var BodyFields = []Field{
	{"kind", "keyword"},
	{"apiVersion", "keyword"},
	{"metadata.name", "keyword"},
	{"metadata.namespace", "keyword"},
	// The posture consumer finds the audit record of one version of an
	// object by it (sink/elasticsearch.FindActor).
	{"metadata.resourceVersion", "keyword"},
	{"metadata.labels", "flattened"},
	{"metadata.annotations", "flattened"},
	{"spec.type", "keyword"},
	{"spec.hostPID", "boolean"},
	{"spec.hostNetwork", "boolean"},
	{"spec.hostIPC", "boolean"},
	{"spec.serviceAccountName", "keyword"},
	{"spec.nodeName", "keyword"},
	{"spec.restartPolicy", "keyword"},
	{"spec.securityContext.runAsUser", "long"},
	{"spec.securityContext.runAsGroup", "long"},
	{"spec.securityContext.runAsNonRoot", "boolean"},
	{"spec.volumes.hostPath.path", "text"},
	{"spec.containers.name", "keyword"},
	{"spec.containers.image", "text"},
	{"spec.containers.volumeMounts.mountPath", "text"},
	{"spec.containers.securityContext.privileged", "boolean"},
	{"spec.containers.securityContext.allowPrivilegeEscalation", "boolean"},
	{"spec.containers.securityContext.runAsUser", "long"},
	{"spec.containers.securityContext.runAsGroup", "long"},
	{"spec.containers.securityContext.runAsNonRoot", "boolean"},
	{"spec.containers.securityContext.readOnlyRootFilesystem", "boolean"},
	{"spec.containers.securityContext.capabilities.add", "keyword"},
	{"spec.containers.securityContext.capabilities.drop", "keyword"},
	{"spec.initContainers.image", "text"},
	{"spec.initContainers.securityContext.privileged", "boolean"},
	{"spec.ephemeralContainers.image", "text"},
	{"spec.ephemeralContainers.securityContext.privileged", "boolean"},
	{"roleRef.kind", "keyword"},
	{"roleRef.name", "keyword"},
	{"subjects.kind", "keyword"},
	{"subjects.name", "keyword"},
	{"subjects.namespace", "keyword"},
	{"rules.verbs", "keyword"},
	{"rules.resources", "keyword"},
	{"rules.apiGroups", "keyword"},
	{"rules.resourceNames", "keyword"},
	{"rules.nonResourceURLs", "keyword"},
	{"webhooks.name", "keyword"},
	{"webhooks.failurePolicy", "keyword"},
	{"webhooks.clientConfig.url", "keyword"},
}

// kinds of schema nodes.
type kind uint8

const (
	kObject kind = iota
	kString      // keyword, text
	kBool
	kLong
	kFlattened
)

// node is the schema tree built from BodyFields.
type node struct {
	kind     kind
	children map[string]*node
}

var bodySchema = buildSchema(BodyFields)

func buildSchema(fields []Field) *node {
	root := &node{kind: kObject, children: map[string]*node{}}
	for _, f := range fields {
		n := root
		parts := strings.Split(f.Path, ".")
		for i, p := range parts {
			c := n.children[p]
			if c == nil {
				c = &node{kind: kObject, children: map[string]*node{}}
				n.children[p] = c
			}
			if i == len(parts)-1 {
				switch f.Type {
				case "keyword", "text":
					c.kind = kString
				case "boolean":
					c.kind = kBool
				case "long":
					c.kind = kLong
				case "flattened":
					c.kind = kFlattened
				default:
					panic("ecs: unknown body field type " + f.Type)
				}
				c.children = nil
			}
			n = c
		}
	}
	return root
}

// BodyProperties renders BodyFields as Elasticsearch mapping properties.
func BodyProperties() map[string]any {
	props := map[string]any{}
	for _, f := range BodyFields {
		m := props
		parts := strings.Split(f.Path, ".")
		for _, p := range parts[:len(parts)-1] {
			o, ok := m[p].(map[string]any)
			if !ok {
				o = map[string]any{"properties": map[string]any{}}
				m[p] = o
			}
			m = o["properties"].(map[string]any)
		}
		m[parts[len(parts)-1]] = leafMapping(f.Type)
	}
	return props
}

func leafMapping(typ string) map[string]any {
	switch typ {
	case "keyword":
		return map[string]any{"type": "keyword", "ignore_above": 1024}
	case "flattened":
		return map[string]any{"type": "flattened", "ignore_above": 1024, "depth_limit": flattenedDepth}
	}
	return map[string]any{"type": typ}
}

// flattenedDepth is the depth_limit of flattened fields; deeper values are
// dropped from the document rather than rejected by Elasticsearch.
const flattenedDepth = 20

// maxBodyDepth bounds the nesting of a body; Elasticsearch's parser refuses
// very deep documents, and such a body is certainly not a Kubernetes object.
const maxBodyDepth = 200

// bodyJSON parses bodies keeping numbers as written (json.Number): a
// float64 round trip would change large integers in _source.
var bodyJSON = jsoniter.Config{UseNumber: true, EscapeHTML: false}.Froze()

// bodyResult says what fitBody did to one body.
type bodyResult struct {
	raw     json.RawMessage // nil: left out
	tooBig  bool            // left out for max_body_bytes
	invalid bool            // left out: not JSON
	dropped []string        // paths removed because they would not fit the mapping
}

// fitBody makes a request/response object safe to index: capped at max
// bytes, without metadata.managedFields (server bookkeeping, often half the
// object; also in Table rows and lists),
// and with every value that would conflict with the mapping removed and
// named in dropped — a body Elasticsearch would refuse must never cost the
// audit record its document. The common, clean case copies nothing but the
// final encoding.
func fitBody(raw []byte, max int, prefix string) bodyResult {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return bodyResult{}
	}
	if len(raw) > max {
		return bodyResult{tooBig: true}
	}
	if out, ok := fastFit(raw); ok {
		return bodyResult{raw: out}
	}
	return slowFit(raw, prefix)
}

// slowFit decodes a body, fixes what does not fit and encodes it again.
func slowFit(raw []byte, prefix string) bodyResult {
	var v any
	if err := bodyJSON.Unmarshal(raw, &v); err != nil {
		return bodyResult{invalid: true}
	}
	f := fitter{}
	v, ok := f.fit(v, bodySchema, prefix, 0)
	if !ok {
		return bodyResult{dropped: []string{prefix}}
	}
	if !f.changed && bytes.IndexByte(raw, '\n') < 0 && bytes.IndexByte(raw, '\r') < 0 {
		return bodyResult{raw: raw, dropped: f.dropped}
	}
	out, err := bodyJSON.Marshal(v)
	if err != nil {
		return bodyResult{invalid: true}
	}
	return bodyResult{raw: out, dropped: f.dropped}
}

type fitter struct {
	changed bool
	dropped []string
}

func (f *fitter) drop(path string) {
	f.changed = true
	if len(f.dropped) < 20 { // enough to debug; a hostile body cannot grow the doc
		f.dropped = append(f.dropped, path)
	}
}

// fit returns v adjusted to schema node n (nil n: unmapped, only field
// names are checked) and whether it can stay at all.
func (f *fitter) fit(v any, n *node, path string, depth int) (any, bool) {
	if depth > maxBodyDepth {
		return nil, false
	}
	if v == nil {
		return nil, true
	}
	if arr, ok := v.([]any); ok {
		// Elasticsearch indexes arrays element by element: keep the
		// elements that fit.
		out := arr[:0]
		for i, e := range arr {
			e2, ok := f.fit(e, n, path+"["+strconv.Itoa(i)+"]", depth+1)
			if !ok {
				f.drop(path + "[" + strconv.Itoa(i) + "]")
				continue
			}
			out = append(out, e2)
		}
		return out, true
	}
	if n == nil {
		if m, ok := v.(map[string]any); ok {
			f.fitKeys(m, nil, path, depth)
		}
		return v, true
	}
	switch n.kind {
	case kObject:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		f.fitKeys(m, n, path, depth)
		return m, true
	case kFlattened:
		m, ok := v.(map[string]any)
		if !ok || mapDepth(m, 1) > flattenedDepth {
			return nil, false
		}
		f.fitKeys(m, nil, path, depth)
		return m, true
	case kString:
		switch v.(type) {
		case string, json.Number, bool:
			return v, true
		}
		return nil, false
	case kBool:
		switch x := v.(type) {
		case bool:
			return v, true
		case string:
			return v, x == "true" || x == "false" || x == ""
		}
		return nil, false
	case kLong:
		var s string
		switch x := v.(type) {
		case json.Number:
			s = string(x)
		case string:
			s = x
		default:
			return nil, false
		}
		fl, err := strconv.ParseFloat(s, 64)
		return v, err == nil && fl >= -9.2e18 && fl <= 9.2e18
	}
	return v, true
}

// fitKeys checks the members of an object: names Elasticsearch refuses
// anywhere (blank, empty dot segments) and dotted names that would expand
// onto a mapped path are dropped; mapped members are fitted to their type.
func (f *fitter) fitKeys(m map[string]any, n *node, path string, depth int) {
	metadata := strings.HasSuffix(path, ".metadata")
	for k, val := range m {
		p := path + "." + k
		if metadata && k == "managedFields" {
			// Server-side apply bookkeeping, cut wherever an object's
			// metadata carries it; its names ("." in fieldsV1) do not
			// count as fixes.
			delete(m, k)
			f.changed = true
			continue
		}
		if badFieldName(k) {
			delete(m, k)
			f.drop(p)
			continue
		}
		var child *node
		if n != nil {
			if strings.IndexByte(k, '.') >= 0 {
				// "spec.hostPID": true would be indexed as spec.hostPID;
				// rather than resolve it, keep the mapped paths unambiguous.
				if _, mapped := n.children[k[:strings.IndexByte(k, '.')]]; mapped {
					delete(m, k)
					f.drop(p)
					continue
				}
			}
			child = n.children[k]
		}
		v2, ok := f.fit(val, child, p, depth+1)
		if !ok {
			delete(m, k)
			f.drop(p)
			continue
		}
		if a, isArr := val.([]any); isArr && len(v2.([]any)) != len(a) {
			m[k] = v2
		}
	}
}

// badFieldName reports names Elasticsearch refuses in any object, mapped or
// not.
func badFieldName(k string) bool {
	// A name that starts and ends with a visible ASCII byte is not blank;
	// only the others need strings.TrimSpace (Unicode spaces), which the
	// scanner would otherwise call for every member name of every body.
	if len(k) == 0 || !visibleASCII(k[0]) || !visibleASCII(k[len(k)-1]) {
		if strings.TrimSpace(k) == "" {
			return true
		}
	}
	if strings.IndexByte(k, '.') < 0 {
		return false
	}
	return strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, "..")
}

func visibleASCII(c byte) bool { return c > ' ' && c < 0x7f }

func mapDepth(v any, d int) int {
	best := d
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			if _, ok := e.(map[string]any); ok {
				best = max(best, mapDepth(e, d+1))
			} else if _, ok := e.([]any); ok {
				best = max(best, mapDepth(e, d))
			}
		}
	case []any:
		for _, e := range x {
			best = max(best, mapDepth(e, d))
		}
	}
	return best
}

// cleanKeys copies a free-form string map (labels, annotations of Events,
// user.extra) without the names Elasticsearch refuses, sorted for stable
// output. dots says what to do with "." in names: keep them (flattened
// fields take any name) or replace them with "_" (annotation fields, as the
// integration's pipeline does, so they never expand into objects).
func cleanKeys[V any](m map[string]V, dots bool) map[string]V {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]V, len(m))
	for k, v := range m {
		if !dots {
			k = strings.ReplaceAll(k, ".", "_")
		}
		if badFieldName(k) {
			continue
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
