package ecs

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// sameAsReflection checks that the append-style encoder writes exactly the
// bytes docJSON (the reflection encoder it replaces) writes for the audit
// document of r, or declines where docJSON fails.
func sameAsReflection(t testing.TB, b *Builder, r *record.Record) {
	t.Helper()
	if r.Source != record.SourceAudit {
		return
	}
	v, err := b.auditDoc(r)
	if err != nil {
		return
	}
	d := v.(*auditDocument)
	want, werr := docJSON.Marshal(d)
	got, ok := encodeAudit(d)
	if !ok {
		if werr == nil && d.Event.Risk == 0 {
			t.Fatalf("record %s: append encoder declined a document docJSON encodes:\n%s", r.ID, want)
		}
		return
	}
	if werr != nil {
		t.Fatalf("record %s: append encoder wrote a document docJSON refuses (%v):\n%s", r.ID, werr, got)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("record %s: append encoder differs from docJSON\n got %s\nwant %s", r.ID, got, want)
	}
}

// TestAuditEncodingMatchesReflection runs sameAsReflection on real audit
// records (rules/testdata/bench-audit.log.gz) and on edge cases: escapes,
// invalid UTF-8, maps, empty and nil lists, zones, times out of range.
func TestAuditEncodingMatchesReflection(t *testing.T) {
	b := testBuilder(t)
	d := record.NewDecoder(bytes.NewReader(testenv.BenchAuditLog(t)), "enc", record.DecodeOptions{Cluster: record.Cluster{Name: "c", UID: "u"}})
	n := 0
	for {
		r, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sameAsReflection(t, b, r)
		n++
	}
	if n == 0 {
		t.Fatal("no records in the corpus")
	}
	for _, tc := range []struct{ name, in string }{
		{"privileged pod", privilegedPod},
		{"escapes", `{"auditID":"a\"\\\n\r\t\u0001\u001f<>&\u2028","stage":"ResponseComplete","verb":"get","user":{"username":"\u00e9\"x","groups":[]},"annotations":{"z.b":"1","a\"":"\u0000","":"x","m":""}}`},
		{"invalid utf8", "{\"auditID\":\"a\xff\xfe\",\"stage\":\"ResponseComplete\",\"userAgent\":\"k\xc3\",\"sourceIPs\":[\"x\xff\",\"10.0.0.1\"]}"},
		{"extra", `{"auditID":"e","stage":"ResponseComplete","user":{"extra":{"b.c":null,"a":[],"":["x"],"d":["1","2"]}},"impersonatedUser":{"uid":"i","extra":{"q":["r"]}}}`},
		{"empty user", `{"auditID":"u","stage":"RequestReceived","user":{},"objectRef":{},"responseStatus":{}}`},
		{"status", `{"auditID":"s","stage":"ResponseComplete","responseStatus":{"code":403,"status":"Failure","message":"no","reason":"Forbidden"},"objectRef":{"resource":"pods","name":"p","subresource":"exec"}}`},
		{"zone", `{"auditID":"z","stage":"ResponseComplete","requestReceivedTimestamp":"2024-01-02T03:04:05.123456789+05:30","stageTimestamp":"2024-01-02T03:04:05Z"}`},
		{"bodies", `{"auditID":"b","stage":"ResponseComplete","requestObject":{"kind":"Pod","metadata":{"name":"p","managedFields":[{"a":1}]}},"responseObject":{"spec":{"hostPID":"yes"}}}`},
		{"big body", `{"auditID":"bb","stage":"ResponseComplete","requestObject":{"x":"` + string(bytes.Repeat([]byte("y"), 9<<10)) + `"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, errs := record.DecodeAll([]byte(tc.in), "enc", record.DecodeOptions{Cluster: record.Cluster{Name: "c"}})
			if len(errs) > 0 || len(recs) == 0 {
				t.Fatalf("decode: %v (%d records)", errs, len(recs))
			}
			for _, r := range recs {
				sameAsReflection(t, b, r)
			}
		})
	}
	// Times and flags set directly: beyond what a decoder produces.
	base, errs := record.DecodeAll([]byte(`{"auditID":"t","stage":"ResponseComplete"}`), "enc", record.DecodeOptions{})
	if len(errs) > 0 || len(base) == 0 {
		t.Fatal(errs)
	}
	for _, tm := range []time.Time{
		{}, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 1, 1, 0, 0, 0, 1, time.FixedZone("x", 23*3600+59*60)),
		time.Date(2024, 1, 1, 0, 0, 0, 0, time.FixedZone("y", -24*3600)),
	} {
		r := *base[0]
		r.EventTime, r.ObservedTime = tm, tm
		r.Flags = record.Flags{Truncated: true, Redacted: []string{"a", "b\n"}}
		sameAsReflection(t, b, &r)
	}
}
