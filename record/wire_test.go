package record

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestWireRoundTrip(t *testing.T) {
	recs, errs := DecodeAll([]byte(auditV1+"\n"+coreEvent+"\n"+eventsEvent), "x", testOpts)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	recs[0].Flags = Flags{Truncated: true, Redacted: []string{"secret-data"}}
	for _, r := range recs {
		b, err := Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("%s: %v", r.ID, err)
		}
		b2, _ := Marshal(got)
		if !bytes.Equal(b, b2) {
			t.Errorf("%s: round trip changed the envelope:\n%s\n%s", r.ID, b, b2)
		}
		if (got.Audit != nil) != (r.Audit != nil) || (got.Event != nil) != (r.Event != nil) || (got.CoreEvent != nil) != (r.CoreEvent != nil) {
			t.Errorf("%s: typed view not restored", r.ID)
		}
		h := Headers(r)
		if string(h[1].Value) != r.ID || string(h[2].Value) != string(r.Source) || string(h[3].Value) != "test" {
			t.Errorf("headers %v", h)
		}
	}
}

func TestUnmarshalErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"schema":2,"id":"x","source":"audit","object":{}}`, "schema 2"},
		{`{"schema":1,"source":"audit","object":{}}`, "id: missing"},
		{`{"schema":1,"id":"x","source":"pods","object":{}}`, `source: unknown source "pods"`},
		{`{"schema":1,"id":"x","source":"audit"}`, "object: missing"},
		{`{"schema":1,"id":"x","source":"event","api_version":"v9","object":{}}`, `api_version: unknown Event API "v9"`},
		{`{"schema":1,"id":"x","source":"audit","object":{"verb":3}}`, "object.verb: cannot use JSON number"},
		{`{"schema":"1"}`, "schema: cannot use JSON string"},
		{`{"schema":`, "invalid JSON"},
	}
	for _, tc := range tests {
		_, err := Unmarshal([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Unmarshal(%s) = %v, want %q", tc.in, err, tc.want)
		}
	}
	if _, err := Unmarshal([]byte(`{"schema":7,"id":"x","source":"audit","object":{}}`)); !errors.Is(err, ErrSchema) {
		t.Errorf("schema error does not wrap ErrSchema: %v", err)
	}
}

func TestIDsAreDeterministic(t *testing.T) {
	a, _ := DecodeAll([]byte(auditV1), "a", testOpts)
	opts := testOpts
	opts.Now = nil // a different observed time must not change the id
	b, _ := DecodeAll([]byte(auditV1), "b", opts)
	if a[0].ID != b[0].ID {
		t.Errorf("ids differ: %s vs %s", a[0].ID, b[0].ID)
	}
	// Both API views of one Event occurrence share an id.
	core := `{"kind":"Event","apiVersion":"v1","metadata":{"uid":"same"},"involvedObject":{"uid":"o"},"count":3}`
	ev := `{"kind":"Event","apiVersion":"events.k8s.io/v1","metadata":{"uid":"same"},"regarding":{"uid":"o"},"deprecatedCount":3}`
	r, errs := DecodeAll([]byte(core+"\n"+ev), "e", testOpts)
	if len(errs) > 0 || r[0].ID != r[1].ID || r[0].ID != "same:3" {
		t.Errorf("ids %v errs %v", r, errs)
	}
}

// TestMarshalMatchesEncodingJSON checks the hand-written envelope against
// encoding/json, including awkward strings and a pretty-printed object.
func TestMarshalMatchesEncodingJSON(t *testing.T) {
	recs, errs := DecodeAll([]byte(auditV1+"\n"+coreEvent+"\n{\n  \"auditID\": \"p\",\n  \"stage\": \"Panic\"\n}\n"), "x", testOpts)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	recs[0].Flags = Flags{Truncated: true, Redacted: []string{"secret-data", "token"}}
	recs[1].Flags = Flags{Redacted: []string{}}
	recs[1].Key = "c/\"odd\" <key> & \\ \n\t\x01 \u2028 é \xff"
	recs[2].Cluster.UID = "uid"
	recs[2].InitialList = true
	for _, r := range recs {
		got, err := Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if !sameEnvelope(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", r.ID, got, want)
		}
	}
}

// sameEnvelope: the envelope fields byte for byte, the object as JSON values
// (Marshal copies it verbatim where encoding/json escapes <, > and &).
func sameEnvelope(got, want []byte) bool {
	const sep = `,"object":`
	gi, wi := bytes.Index(got, []byte(sep)), bytes.Index(want, []byte(sep))
	if gi < 0 || wi < 0 || !bytes.Equal(got[:gi], want[:wi]) {
		return false
	}
	var g, w any
	if json.Unmarshal(got[gi+len(sep):len(got)-1], &g) != nil || json.Unmarshal(want[wi+len(sep):len(want)-1], &w) != nil {
		return false
	}
	return reflect.DeepEqual(g, w)
}
