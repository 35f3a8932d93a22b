package record

import (
	"bytes"
	"testing"

	jsoniter "github.com/json-iterator/go"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kubesift/kubesift/internal/testenv"
)

// The benchmarks below put each hand-written path beside the general one it
// stands in for, measured in the same run on the recorded bench corpus
// (rules/testdata/bench-audit.log.gz); one op is one event (or body), in
// corpus order. The whole of decode plus rules is measured against the
// merge base's binary by hack/bench-eval.sh (make bench).

func benchLines(b *testing.B) [][]byte {
	return bytes.Split(bytes.TrimSuffix(testenv.BenchAuditLog(b), []byte("\n")), []byte("\n"))
}

// BenchmarkAuditView is the typed view of an audit event once the document
// is classified: "fast" is decodeAuditFast, "general" the path it declines
// to (decodeAuditLite, or json-iterator on the whole event).
func BenchmarkAuditView(b *testing.B) {
	lines := benchLines(b)
	probes := make([]probe, len(lines))
	n := 0
	for i, l := range lines {
		probes[i].members = make([]member, maxMembers)
		if err := scanProbe(l, &probes[i]); err != nil {
			b.Fatal(err)
		}
		n += len(l)
	}
	for _, tc := range []struct {
		name   string
		decode func([]byte, *probe, *auditv1.Event) bool
	}{
		{"general", func(l []byte, p *probe, ev *auditv1.Event) bool {
			return decodeAuditLite(l, p, ev) || unmarshalTyped(l, ev) == nil
		}},
		{"fast", decodeAuditFast},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(n / len(lines)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				var ev auditv1.Event
				if !tc.decode(lines[i%len(lines)], &probes[i%len(lines)], &ev) {
					b.Fatal("declined")
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkParseObject is a rule's parse of a request or response body:
// ParseObject beside json-iterator, which parsed bodies before it.
func BenchmarkParseObject(b *testing.B) {
	var bodies [][]byte
	n := 0
	for _, l := range benchLines(b) {
		var ev auditv1.Event
		if err := unmarshalTyped(l, &ev); err != nil {
			b.Fatal(err)
		}
		if ev.RequestObject != nil {
			bodies = append(bodies, ev.RequestObject.Raw)
			n += len(ev.RequestObject.Raw)
		}
	}
	std := jsoniter.ConfigCompatibleWithStandardLibrary
	for _, tc := range []struct {
		name  string
		parse func([]byte) bool
	}{
		{"json-iterator", func(raw []byte) bool { var m map[string]any; return std.Unmarshal(raw, &m) == nil }},
		{"ParseObject", func(raw []byte) bool { _, ok := ParseObject(raw); return ok }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(n / len(bodies)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if !tc.parse(bodies[i%len(bodies)]) {
					b.Fatal("not parsed")
				}
			}
		})
	}
}
