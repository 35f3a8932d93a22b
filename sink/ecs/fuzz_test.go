package ecs

import (
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/kubesift/kubesift/record"
)

// FuzzRecord builds documents from arbitrary record objects: the builder
// never panics, and whatever it returns is one line of valid UTF-8 JSON
// (a bulk request is NDJSON) or an error naming a field; audit documents
// are byte for byte what the reflection encoder writes (sameAsReflection).
func FuzzRecord(f *testing.F) {
	for _, s := range []string{privilegedPod,
		`{"auditID":"x","stage":"Panic","requestObject":[1,{"spec":{"type":{}}}],"responseObject":{"a..b":{"":1}}}`,
		`{"kind":"Event","apiVersion":"v1","metadata":{"uid":"u","labels":{"":"x",".":"y"}},"involvedObject":{"kind":"Pod"}}`,
		`{"kind":"Event","apiVersion":"events.k8s.io/v1","metadata":{"uid":"u"},"regarding":{"kind":"Pod"},"note":"\u2028"}`,
		`{"auditID":"y","stage":"ResponseComplete","annotations":{"a.b":"c","":"d"},"user":{"extra":{"x.y":["z"]}}}`} {
		f.Add([]byte(s), uint8(0))
	}
	f.Add([]byte(`{"kind":"Pod","metadata":{"name":"\xff"},"spec":{"containers":[{"image":1e999}]}}`), uint8(2))
	b := testBuilder(f)
	f.Fuzz(func(t *testing.T, data []byte, src uint8) {
		var recs []*record.Record
		if src%3 == 2 {
			recs = []*record.Record{{Schema: 1, ID: "o:1", Source: record.SourceObject, Object: data}}
		} else {
			recs, _ = record.DecodeAll(data, "fuzz", record.DecodeOptions{MaxDocBytes: 1 << 16})
		}
		for _, r := range recs {
			sameAsReflection(t, b, r)
			d, err := b.Record(r)
			if err != nil {
				var fe *FieldError
				if !asFieldError(err, &fe) || fe.Field == "" {
					t.Fatalf("error without a field: %v", err)
				}
				continue
			}
			check(t, d.Body)
		}
	})
}

func asFieldError(err error, fe **FieldError) bool {
	e, ok := err.(*FieldError)
	*fe = e
	return ok
}

func check(t *testing.T, body []byte) {
	t.Helper()
	if !json.Valid(body) || !utf8.Valid(body) {
		t.Fatalf("invalid document: %q", body)
	}
	for _, c := range body {
		if c == '\n' || c == '\r' {
			t.Fatalf("document spans lines: %q", body)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil || m["@timestamp"] == nil {
		t.Fatalf("document without @timestamp: %s", body)
	}
}

// FuzzFitBody checks the fast path of fitBody against the slow one: when
// the fast path accepts a body, decoding and fixing it finds nothing to fix
// and yields the same JSON value.
func FuzzFitBody(f *testing.F) {
	for _, s := range []string{
		`{"kind":"Pod","metadata":{"name":"p","managedFields":[{"m":1}],"labels":{"a.b":"c"}},"spec":{"hostPID":true,"containers":[{"image":"x","securityContext":{"privileged":"true","runAsUser":0}}]}}`,
		`{"metadata":{"managedFields":[]}}`, `{"metadata":{"a":1,"managedFields":{}}}`, `{"metadata":{"managedFields":1,"b":2}}`,
		`[{"op":"add","path":"/spec/x","value":{"spec":{"hostPID":"yes"}}}]`, `{"spec":{"type":{"a":1}}}`, `{"a.b":{"":1}}`,
		`{"spec":{"securityContext":{"runAsUser":"1e30"}}}`, `{"a":"\0"}`, `{"a":"\u00zz"}`, `{"a":1-2}`, `{"a":01}`, `{"a":-}`, `{"rules":[{"verbs":["*"],"resources":[["a"]]}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fast, ok := fastFit(raw)
		if !ok {
			return
		}
		slow := slowFit(raw, "r")
		if slow.invalid || len(slow.dropped) > 0 {
			t.Fatalf("fast path accepted %q; slow path: invalid %v dropped %v", raw, slow.invalid, slow.dropped)
		}
		var a, b any
		if err := json.Unmarshal(fast, &a); err != nil {
			t.Fatalf("fast output %q is not JSON: %v", fast, err)
		}
		if err := json.Unmarshal(slow.raw, &b); err != nil {
			t.Fatalf("slow output is not JSON: %v", err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("fast %s\nslow %s", fast, slow.raw)
		}
	})
}
