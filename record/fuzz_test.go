package record

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/runtime"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// FuzzDecoder feeds arbitrary streams to the stream decoder (NDJSON, lists,
// wrappers). It must never panic, never loop, and only return io.EOF,
// *DecodeError, or records with an id.
func FuzzDecoder(f *testing.F) {
	for _, s := range []string{auditV1, auditV1beta1, auditNoAPI, coreEvent, eventsEvent,
		auditV1 + "\n{\"kind\":\n" + auditNoAPI, `{"kind":"EventList","items":[` + auditV1 + `]}`,
		`{"properties":{"log":"{\"auditID\":\"x\",\"stage\":\"Panic\"}"}}`, `[1,{"a":"}"}]`, `{"protoPayload":{"methodName":"a.b"},"insertId":"i"}`,
		`{"records":[{"properties":{"log":` + jsonQuote(auditV1) + `}},3]}`, `{"logEvents":[{"message":` + jsonQuote(auditNoAPI) + `},{"message":"{"}]}`,
		`{"events":[{"message":"{\"records\":[]}"}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		opts := testOpts
		opts.MaxDocBytes = 4096
		d := NewDecoder(bytes.NewReader(data), "fuzz", opts)
		// The same input read with ReuseBuffer gives the same records, each
		// when it is returned.
		opts.ReuseBuffer = true
		reuse := NewDecoder(bytes.NewReader(data), "fuzz", opts)
		for i := 0; ; i++ {
			if i > len(data)+2 {
				t.Fatalf("more results than input bytes: decoder loops")
			}
			r, err := d.Next()
			r2, err2 := reuse.Next()
			if !reflect.DeepEqual(r, r2) || fmt.Sprint(err) != fmt.Sprint(err2) {
				t.Fatalf("result %d with ReuseBuffer differs:\n%+v, %v\n%+v, %v", i, r2, err2, r, err)
			}
			if err == io.EOF {
				return
			}
			if err != nil {
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				continue
			}
			if r.ID == "" || r.Object == nil {
				t.Fatalf("record without id or object: %+v", r)
			}
		}
	})
}

// FuzzUnmarshal feeds arbitrary bytes to the wire decoder; whatever it
// accepts must survive a round trip.
func FuzzUnmarshal(f *testing.F) {
	recs, _ := DecodeAll([]byte(auditV1+"\n"+coreEvent+"\n"+eventsEvent), "seed", testOpts)
	for _, r := range recs {
		b, _ := Marshal(r)
		f.Add(b)
	}
	f.Add([]byte(`{"schema":1,"id":"x","source":"audit","object":{"verb":3}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Unmarshal(data)
		if err != nil {
			return
		}
		got, err := Marshal(r)
		if err != nil {
			t.Fatalf("accepted record does not marshal: %v", err)
		}
		if want, err := json.Marshal(r); err == nil && !sameEnvelope(got, want) {
			t.Fatalf("Marshal differs from encoding/json:\n got %s\nwant %s", got, want)
		}
		// The envelope is read with jsoniter: it must accept only what
		// encoding/json accepts, and read the same (invalid UTF-8 aside,
		// which encoding/json replaces and Marshal replaces on the way out).
		if utf8.Valid(data) {
			var std Record
			if err := json.Unmarshal(data, &std); err != nil {
				t.Fatalf("accepted what encoding/json refuses (%v): %q", err, data)
			}
			std.Audit, std.CoreEvent, std.Event = r.Audit, r.CoreEvent, r.Event
			if !reflect.DeepEqual(*r, std) {
				t.Fatalf("envelope differs from encoding/json's:\n got %+v\nwant %+v", *r, std)
			}
		}
	})
}

// FuzzGKE feeds arbitrary GKE-shaped entries to the Cloud Audit Log converter.
func FuzzGKE(f *testing.F) {
	f.Add([]byte(`{"protoPayload":{"methodName":"io.k8s.core.v1.pods.create","resourceName":"core/v1/namespaces/default/pods/p/exec"},"insertId":"g"}`))
	f.Add([]byte(`{"protoPayload":{"methodName":"io.k8s.get","resourceName":"readyz"},"insertId":"g"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := fromGKE(data)
		if err == nil && (ev.AuditID == "" || ev.Stage == "") {
			t.Fatalf("converted event without id/stage: %+v", ev)
		}
	})
}

// FuzzScanProbe checks the fast top-level scanner against encoding/json:
// whenever it accepts valid JSON, it must classify it exactly as
// json.Unmarshal into the probe does.
func FuzzScanProbe(f *testing.F) {
	for _, s := range []string{auditV1, coreEvent, eventsEvent, `{"kind":"EventList","items":[{"a":"\"}"}]}`,
		`{"kind":"E\u0076ent","apiVersion":"v1","involvedObject":{}}`, `{"auditID":"x","stage":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast probe
		if scanProbe(data, &fast) != nil || !json.Valid(data) {
			return
		}
		// encoding/json matches keys case-insensitively; Kubernetes (and
		// the scanner) do not. Compare only inputs where that cannot matter.
		lower := bytes.ToLower(data)
		for _, k := range []string{"kind", "apiVersion", "auditID", "stage", "items", "protoPayload", "properties", "involvedObject", "regarding", "timestamp"} {
			if bytes.Count(lower, []byte(`"`+strings.ToLower(k)+`"`)) != bytes.Count(data, []byte(`"`+k+`"`)) {
				return
			}
		}
		var slow probe
		if json.Unmarshal(data, &slow) != nil {
			return // e.g. kind is a number: the slow path reports it
		}
		if fast.Kind != slow.Kind || fast.APIVersion != slow.APIVersion || fast.AuditID != slow.AuditID || fast.Stage != slow.Stage ||
			(fast.Items == nil) != (slow.Items == nil) || (fast.InvolvedObject == nil) != (slow.InvolvedObject == nil) ||
			(fast.Regarding == nil) != (slow.Regarding == nil) || (fast.ProtoPayload == nil) != (slow.ProtoPayload == nil) {
			t.Fatalf("scanProbe disagrees with encoding/json on %q:\nfast %+v\nslow %+v", data, fast, slow)
		}
	})
}

// FuzzBodyDecoder checks NewBodyDecoder against the stream decoder: on any
// input without a line break (where the splitter's line heuristics cannot
// cut a document differently) both must return the same records and the
// same errors, in the same order.
func FuzzBodyDecoder(f *testing.F) {
	for _, s := range []string{auditV1, `{"kind":"EventList","items":[` + auditV1 + `,{},1,` + auditNoAPI + `]}`,
		`[` + coreEvent + `,[` + eventsEvent + `,{"kind":"Pod"}]]`, `{"records":[{"properties":{"log":` + jsonQuote(auditV1) + `}},3]}`,
		`{"logEvents":[{"message":"{"}]}`, `  {"items":[{}]}  `, `{"items":[]} {"items":[]}`, `[1,`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if bytes.ContainsAny(data, "\r\n") {
			return
		}
		opts := testOpts
		opts.MaxDocBytes = 4096
		collect := func(d *Decoder) []string {
			var out []string
			for i := 0; ; i++ {
				if i > len(data)+2 {
					t.Fatalf("more results than input bytes: decoder loops")
				}
				r, err := d.Next()
				switch {
				case err == io.EOF:
					return out
				case err != nil:
					var de *DecodeError
					if !errors.As(err, &de) {
						t.Fatalf("unexpected error type %T: %v", err, err)
					}
					out = append(out, "error "+err.Error())
				default:
					out = append(out, "record "+r.ID+" "+string(r.Object))
				}
			}
		}
		stream := collect(NewDecoder(bytes.NewReader(data), "fuzz", opts))
		body := collect(NewBodyDecoder(data, "fuzz", opts))
		if !reflect.DeepEqual(stream, body) {
			t.Fatalf("body decoder disagrees with the stream decoder on %q:\nstream %q\nbody   %q", data, stream, body)
		}
	})
}

// FuzzEffectiveOf feeds arbitrary patch bodies and objects-before to the
// patch appliers, as every form (the body decides JSON, merge or strategic;
// the URI apply). It must never panic, and what it returns must be an object
// that encodes back to JSON: rules and alert templates read and print it.
func FuzzEffectiveOf(f *testing.F) {
	for _, s := range []struct{ patch, before string }{
		{`[{"op":"add","path":"/spec/template/spec/containers/0/securityContext","value":{"privileged":true}}]`, ``},
		{`[{"op":"copy","from":"/a","path":"/a/-"},{"op":"move","from":"/a/0","path":"/b/7/c"}]`, `{"a":[1,2]}`},
		{`[{"op":"remove","path":"/spec/template/spec/containers/0"},{"op":"test","path":"","value":null}]`, `{"spec":{"template":{"spec":{"containers":[{}]}}}}`},
		{`{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"a"}],"containers":[{"name":"a","$patch":"delete"}]}}}}`, `{"spec":{"template":{"spec":{"containers":[{"name":"a"}]}}}}`},
		{`{"spec":{"template":{"spec":{"$retainKeys":["volumes"],"volumes":null}}},"metadata":{"labels":null}}`, `{"metadata":{"labels":{"a":"b"}}}`},
		{`{"apiVersion":"apps/v1","kind":"Deployment","spec":{}}`, ``},
		{`[1,"x",{"op":"add"}]`, `[]`},
	} {
		f.Add([]byte(s.patch), []byte(s.before), "apps", "deployments", false)
	}
	f.Fuzz(func(t *testing.T, patch, before []byte, group, resource string, apply bool) {
		uri := "/apis/x"
		if apply {
			uri += "?force=true"
		}
		ev := &auditv1.Event{Verb: "patch", RequestURI: uri, RequestObject: &runtime.Unknown{Raw: patch},
			ObjectRef: &auditv1.ObjectReference{APIGroup: group, Resource: resource}}
		var b map[string]any
		_ = json.Unmarshal(before, &b)
		eff, err := EffectiveOf(ev, b)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error of type %T: %v", err, err)
			}
		}
		if eff == nil || eff.Object == nil {
			return
		}
		if _, err := json.Marshal(eff.Object); err != nil {
			t.Fatalf("effective object does not encode: %v", err)
		}
		ObjectFromOps(eff.Ops)
	})
}

// FuzzDecodeStored holds decodeStored to decodeBody: every body decodeBody
// refuses refused, nothing valid refused, and the same object apart from the
// top-level metadata.managedFields.
func FuzzDecodeStored(f *testing.F) {
	for _, s := range []string{
		`{"kind":"Pod","metadata":{"name":"a","managedFields":[{"manager":"m","fieldsV1":{"f:spec":{}}}]},"spec":{}}`,
		`{"metadata":null}`, `{"metadata":[1]}`, `{"metadata":{"managedFields":[-.0]}}`, `[{"kind":"X"}]`, `null`, `{"a":1} x`, `{"a":`, ` {"a":"\u00e9"} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := decodeStored(raw)
		body, bodyErr := decodeBody(raw, "responseObject")
		// jsoniter takes a NUL byte after the value for the end of the
		// input; decodeStored refuses it, as encoding/json does.
		if (err == nil && bodyErr != nil) || (err != nil && bodyErr == nil && json.Valid(raw)) {
			t.Fatalf("decodeStored error %v, decodeBody error %v (valid JSON: %v)", err, bodyErr, json.Valid(raw))
		}
		if err != nil || bodyErr != nil {
			return
		}
		want, _ := body.(map[string]any)
		if md, ok := want["metadata"].(map[string]any); ok {
			delete(md, "managedFields")
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeStored %v, decodeBody without managedFields %v", got, want)
		}
	})
}
