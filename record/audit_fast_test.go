package record

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kubesift/kubesift/internal/testenv"
)

// TestAuditFastTakesKubeAPIServerOutput checks that every event of the
// recorded corpus (kube-apiserver's own output) takes the hand-written
// path, and that it reads each exactly as the general decoder does.
func TestAuditFastTakesKubeAPIServerOutput(t *testing.T) {
	raw := testenv.BenchAuditLog(t)
	n := 0
	for _, line := range bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n")) {
		p := probe{members: make([]member, maxMembers)}
		if err := scanProbe(line, &p); err != nil {
			t.Fatalf("line %d: scanProbe: %v", n+1, err)
		}
		var fast, general auditv1.Event
		if !decodeAuditFast(line, &p, &fast) {
			t.Fatalf("line %d: not taken by the fast path: %.300s", n+1, line)
		}
		if err := unmarshalTyped(line, &general); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fast, general) {
			t.Fatalf("line %d: fast path differs:\n fast %+v\n general %+v", n+1, fast, general)
		}
		n++
	}
	if n < 1000 {
		t.Fatalf("only %d events in the corpus", n)
	}
}

// TestAuditFastDeclines lists inputs the hand-written path must leave to the
// general decoder (which matches keys case-insensitively, merges repeated
// keys, replaces invalid UTF-8 and names type errors).
func TestAuditFastDeclines(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"key in another case", `{"auditID":"a","stage":"x","Verb":"get"}`},
		{"repeated key", `{"auditID":"a","stage":"x","verb":"get","verb":"list"}`},
		{"repeated annotation", `{"auditID":"a","annotations":{"k":"1","k":"2"}}`},
		{"repeated nested key", `{"auditID":"a","user":{"username":"a","username":"b"}}`},
		{"number for string", `{"auditID":"a","verb":3}`},
		{"string for code", `{"auditID":"a","responseStatus":{"metadata":{},"code":"200"}}`},
		{"fractional code", `{"auditID":"a","responseStatus":{"code":200.5}}`},
		{"invalid utf-8", "{\"auditID\":\"a\",\"verb\":\"g\xffet\"}"},
		{"lone surrogate", `{"auditID":"a","verb":"\ud800"}`},
		{"bad escape", `{"auditID":"a","verb":"\x41"}`},
		{"control character", "{\"auditID\":\"a\",\"verb\":\"g\tet\"}"},
		{"bad timestamp", `{"auditID":"a","stageTimestamp":"2025-01-01T00:00:00Z"}`},
		{"invalid ignored value", `{"auditID":"a","extraField":[1,}`},
		{"invalid small body", `{"auditID":"a","requestObject":{"a":tru}}`},
		{"body not an object", `{"auditID":"a","requestObject":"x"}`},
		{"trailing comma", `{"auditID":"a",}`},
		{"leading plus", `{"auditID":"a","responseStatus":{"code":+1}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p probe
			var ev auditv1.Event
			if decodeAuditFast([]byte(tc.in), &p, &ev) {
				t.Fatalf("accepted %s: %+v", tc.in, ev)
			}
			if !reflect.DeepEqual(ev, auditv1.Event{}) {
				t.Fatalf("declined but left %+v", ev)
			}
		})
	}
}

// FuzzAuditFast checks the hand-written audit decoder against
// encoding/json: whatever it accepts, encoding/json accepts and reads the
// same. The probe is empty, so every body is validated (with a probe,
// large bodies are attached unwalked, as decodeAuditLite does).
func FuzzAuditFast(f *testing.F) {
	for _, s := range []string{auditV1, auditV1beta1, auditNoAPI,
		`{"auditID":"a","stage":"x","user":{"username":"u","groups":["a","b\u00e9"],"extra":{"k":["v"]}},"impersonatedUser":null,"sourceIPs":[]}`,
		`{"auditID":"a","objectRef":{"resource":"pods","uid":"u"},"responseStatus":{"metadata":{},"status":"Failure","reason":"NotFound","details":{"name":"p","kind":"pods"},"code":404}}`,
		`{"auditID":"a","requestObject":{"kind":"Pod"},"responseObject":null,"annotations":{"a":"b\n\ud83d\ude00"},"authenticationMetadata":{"impersonationConstraint":"x"}}`,
		`{"auditID":"a","stageTimestamp":"2025-01-01T00:00:00.000001Z","requestReceivedTimestamp":null, "unknown" : {"x":[1,2,{"y":null}]} }`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(how string, p *probe) {
			var fast auditv1.Event
			if !decodeAuditFast(data, p, &fast) {
				return
			}
			var std auditv1.Event
			if err := json.Unmarshal(data, &std); err != nil {
				t.Fatalf("%s: accepted what encoding/json refuses (%v): %q", how, err, data)
			}
			if !reflect.DeepEqual(fast, std) {
				t.Fatalf("%s: reads %q differently from encoding/json:\n fast %+v\n  std %+v", how, data, fast, std)
			}
		}
		check("own scan", &probe{})
		// With the probe's members (and its unwalked large bodies, which
		// only a valid document may be given).
		p := probe{members: make([]member, maxMembers)}
		if scanProbe(data, &p) == nil && json.Valid(data) {
			check("probe's scan", &p)
		}
	})
}

// refStringEnd is stringEnd by the definition: walk byte by byte, a
// backslash escaping the byte after it.
func refStringEnd(data []byte, i int) (int, bool) {
	esc := false
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '"':
			return j + 1, esc
		case '\\':
			esc = true
			j++
		}
	}
	return -1, false
}

// TestStringEnd puts quotes and backslashes on both sides of the stretch
// stringEnd walks byte by byte (shortString) and of its searches.
func TestStringEnd(t *testing.T) {
	for n := 0; n < 3*shortString; n++ {
		for _, fill := range []string{`a`, `\\`, `\"`, `\\\"`, `é`} {
			body := bytes.Repeat([]byte(fill), n)
			for _, tail := range []string{`"`, `\"`, `\\"`, `\\\"`, ``, `\`} {
				data := append(append([]byte(`"`), body...), tail...)
				data = append(data, `,"x"`...)
				gotEnd, gotEsc := stringEnd(data, 0)
				wantEnd, wantEsc := refStringEnd(data, 0)
				if gotEnd != wantEnd || gotEsc != wantEsc {
					t.Fatalf("stringEnd(%q) = %d, %v; want %d, %v", data, gotEnd, gotEsc, wantEnd, wantEsc)
				}
			}
		}
	}
}

func FuzzStringEnd(f *testing.F) {
	f.Add([]byte(`"abc\"def\\"x`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || data[0] != '"' {
			return
		}
		gotEnd, gotEsc := stringEnd(data, 0)
		wantEnd, wantEsc := refStringEnd(data, 0)
		if gotEnd != wantEnd || gotEsc != wantEsc {
			t.Fatalf("stringEnd(%q) = %d, %v; want %d, %v", data, gotEnd, gotEsc, wantEnd, wantEsc)
		}
	})
}

// TestParseObjectBodies parses every request and response body of the
// recorded corpus and compares the result with encoding/json's.
func TestParseObjectBodies(t *testing.T) {
	raw := testenv.BenchAuditLog(t)
	n := 0
	for _, line := range bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n")) {
		var ev auditv1.Event
		if err := unmarshalTyped(line, &ev); err != nil {
			t.Fatal(err)
		}
		for _, b := range []*runtime.Unknown{ev.RequestObject, ev.ResponseObject} {
			if b == nil {
				continue
			}
			got, ok := ParseObject(b.Raw)
			if !ok {
				t.Fatalf("declined a body kube-apiserver wrote: %.300s", b.Raw)
			}
			var want map[string]any
			if err := json.Unmarshal(b.Raw, &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("differs from encoding/json on %.300s", b.Raw)
			}
			n++
		}
	}
	if n < 100 {
		t.Fatalf("only %d bodies", n)
	}
}

// TestParseObjectDeclines lists what ParseObject leaves to encoding/json.
func TestParseObjectDeclines(t *testing.T) {
	for _, in := range []string{`[]`, `{`, `{"a":}`, `{"a":1,}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":+1}`,
		`{"a":tru}`, `{"a":nul}`, `{"a":"\x"}`, "{\"a\":\"\xff\"}", `{"a":"\udc00"}`, `{"a":1e999}`, `{"a":[1,]}`, `{"a":1} x`,
		"{\"a\":\"\x01\"}", `{"a" 1}`, strings.Repeat(`{"a":`, maxGenericDepth+2) + `1` + strings.Repeat(`}`, maxGenericDepth+2)} {
		if m, ok := ParseObject([]byte(in)); ok {
			t.Errorf("accepted %q: %v", in, m)
		}
	}
}

// FuzzParseObject checks ParseObject against encoding/json: whatever it
// accepts, encoding/json accepts and reads the same.
func FuzzParseObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,-2.5e3,0,true,false,null,"x\u00e9\n"],"b":{"c":{}},"a":[]}`, ` {"k\"ey":-0.0E+1} `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := ParseObject(data)
		if !ok {
			return
		}
		var want map[string]any
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("accepted what encoding/json refuses (%v): %q", err, data)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("reads %q differently from encoding/json:\n got %v\nwant %v", data, got, want)
		}
	})
}

// TestPlainASCII checks the eight-bytes-at-a-time test against the byte
// loop for every byte value at every position of strings up to 17 bytes,
// the rest printable: a borrow or a missed lane shows as a difference.
func TestPlainASCII(t *testing.T) {
	slow := func(b []byte) bool {
		for _, c := range b {
			if c < 0x20 || c >= 0x80 || c == '\\' {
				return false
			}
		}
		return true
	}
	for n := 1; n <= 17; n++ {
		for pos := 0; pos < n; pos++ {
			for c := 0; c < 256; c++ {
				b := bytes.Repeat([]byte{'a'}, n)
				b[pos] = byte(c)
				if got, want := plainASCII(b), slow(b); got != want {
					t.Fatalf("plainASCII(%q) = %v, want %v", b, got, want)
				}
			}
		}
	}
}

// TestUTCMicro checks the fixed-form timestamp reader against time.Parse
// with metav1.RFC3339Micro: the same time where it reads one, and a refusal
// (left to time.Parse) for every other form and every out-of-range part.
func TestUTCMicro(t *testing.T) {
	for _, s := range []string{
		"2026-11-25T19:29:27.902472Z", "2024-02-29T23:59:59.999999Z", "0000-01-01T00:00:00.000000Z",
		"2023-02-29T00:00:00.000000Z", "2026-04-31T00:00:00.000000Z", "2026-13-01T00:00:00.000000Z",
		"2026-00-01T00:00:00.000000Z", "2026-01-00T00:00:00.000000Z", "2026-01-01T24:00:00.000000Z",
		"2026-01-01T00:60:00.000000Z", "2026-01-01T00:00:60.000000Z", "2026-01-01T00:00:00.00000Z",
		"2026-01-01T00:00:00.0000000Z", "2026-01-01T00:00:00.000000+01:00", "2026-01-01 00:00:00.000000Z",
		"2026-01-01T00:00:00.00000aZ", "+026-01-01T00:00:00.000000Z", "2026-1-01T00:00:00.0000000Z",
	} {
		want, err := time.Parse(metav1.RFC3339Micro, s)
		got, ok := utcMicro([]byte(`"` + s + `"`))
		switch {
		case ok && err != nil:
			t.Errorf("%s: read %v, time.Parse refuses it: %v", s, got, err)
		case ok && !reflect.DeepEqual(got, want.Local()):
			t.Errorf("%s: read %v, time.Parse reads %v", s, got, want.Local())
		case !ok && err == nil && strings.HasSuffix(s, "Z") && len(s) == 27:
			t.Errorf("%s: refused a form it should read", s)
		}
	}
	// Every day of years around leap-year rules and the ends of the range,
	// each at a time of day that varies with it.
	for _, year := range []int{0, 1, 4, 99, 100, 399, 400, 1600, 1900, 1969, 1970, 1999, 2000, 2023, 2024, 2026, 2100, 9999} {
		for d := time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() == year; d = d.AddDate(0, 0, 1) {
			d := d.Add(time.Duration(d.YearDay()) * 4003 * time.Second).Add(time.Duration(d.YearDay()) * 1001 * time.Microsecond)
			if d.Year() != year {
				continue
			}
			s := d.Format(metav1.RFC3339Micro)
			want, err := time.Parse(metav1.RFC3339Micro, s)
			got, ok := utcMicro([]byte(`"` + s + `"`))
			if err != nil || !ok || !reflect.DeepEqual(got, want.Local()) {
				t.Fatalf("%s: read %v, %v; time.Parse reads %v, %v", s, got, ok, want.Local(), err)
			}
		}
	}
}

// TestAuditFieldNames checks that auditField knows exactly the names of
// auditFieldNames, each as its own field, in the order of the constants.
func TestAuditFieldNames(t *testing.T) {
	for i, name := range auditFieldNames {
		if f := auditField([]byte(name)); f != i {
			t.Errorf("auditField(%q) = %d, want %d", name, f, i)
		}
	}
	for _, k := range []string{"", "Kind", "verbs", "annotation", "metadata"} {
		if f := auditField([]byte(k)); f != -1 {
			t.Errorf("auditField(%q) = %d, want -1", k, f)
		}
	}
}

// TestInternSharesCommonStrings checks that a common value comes back as the
// table's copy (no allocation) and any other as an equal new string.
func TestInternSharesCommonStrings(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = intern([]byte("system:authenticated")) }); n != 0 {
		t.Errorf("a common string allocated %v times", n)
	}
	if got := intern([]byte("not-a-common-value")); got != "not-a-common-value" {
		t.Errorf("intern = %q", got)
	}
	for _, c := range commonStrings {
		b := []byte(c)
		if got, ok := commonTable.lookup(b); !ok || got != c {
			t.Errorf("lookup(%q) = %q, %v", c, got, ok)
		}
		// Equal in length and in the first and last eight bytes: the slot
		// is the same, the comparison must still refuse it.
		if len(b) > 16 {
			b[len(b)/2] ^= 1
			if got, ok := commonTable.lookup(b); ok {
				t.Errorf("lookup(%q) = %q, a common string", b, got)
			}
		}
	}
	for _, s := range []string{"", "a", "127.0.0.1", "bench-11974", "Event ", "event", "system:serviceaccount:default:x"} {
		if got, ok := commonTable.lookup([]byte(s)); ok {
			t.Errorf("lookup(%q) = %q, a common string", s, got)
		}
	}
}
