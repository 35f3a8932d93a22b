package redact

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/record"
)

// A record over max_record_bytes with no body to drop is cut to fit: its
// long strings shortened and listed with their sizes, its ID kept, so that
// the publisher can send it. A record whose size is in its identity is left
// whole (the publisher dead-letters it).
func TestSizeToFit(t *testing.T) {
	const max = 1_000_000
	hugeURI := "/api/v1/pods?labelSelector=" + strings.Repeat("a", 1_050_000)
	withAnn := func(line string, key, val string) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			panic(err)
		}
		m["annotations"].(map[string]any)[key] = val
		b, _ := json.Marshal(m)
		return string(b)
	}
	withUser := func(line, user string) string {
		return strings.Replace(line, `"username":"alice"`, `"username":"`+user+`"`, 1)
	}
	withAgent := func(line, agent string) string {
		return strings.Replace(line, `"userAgent":"kubectl/v1.37"`, `"userAgent":"`+agent+`"`, 1)
	}
	tests := []struct {
		name     string
		line     string
		wantFit  bool
		wantCut  []string // fields listed in the annotation
		wantVerb string
	}{
		{"megabyte requestURI", auditLine("get", hugeURI, "pods", "", "", ""), true, []string{"requestURI=" + itoa(len(hugeURI))}, "get"},
		{"multi-byte requestURI", auditLine("get", "/api/v1/pods?x="+strings.Repeat("é", 600_000), "pods", "", "", ""), true, []string{"requestURI="}, "get"},
		{"user agent and annotation",
			withAnn(withAgent(auditLine("list", "/api/v1/pods", "pods", "", "", ""), strings.Repeat("u", 700_000)), "note", strings.Repeat("n", 700_000)),
			true, []string{"annotations.note=700000", "userAgent=700000"}, "list"},
		{"bodies dropped and strings cut",
			auditLine("create", hugeURI, "configmaps", "", `{"kind":"ConfigMap","data":{"a":"`+strings.Repeat("b", 300_000)+`"}}`, ""),
			true, []string{"requestURI="}, "create"},
		{"user name: key follows", withUser(auditLine("get", "/api/v1/pods", "pods", "", "", ""), strings.Repeat("z", 1_100_000)), true, []string{"user.username=1100000"}, "get"},
		{"identity too large: left to the publisher",
			strings.Replace(auditLine("get", "/api/v1/pods", "pods", "", "", ""), `"auditID":"id-pods-get"`, `"auditID":"`+strings.Repeat("i", 1_100_000)+`"`, 1),
			false, nil, "get"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSanitizer(t, nil, func(c *config.CollectorConfig) { c.Size.MaxRecordBytes = max })
			rec := decodeOne(t, tc.line)
			id := rec.ID
			if err := s.Apply(rec); err != nil {
				t.Fatal(err)
			}
			if rec.ID != id {
				t.Errorf("ID changed: %.60s → %.60s", id, rec.ID)
			}
			out, err := record.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.wantFit {
				if rec.Flags.Truncated || len(out) <= max {
					t.Errorf("truncated = %v, %d bytes: want the record unchanged", rec.Flags.Truncated, len(out))
				}
				if got := testutil.ToFloat64(s.oversize); got != 1 {
					t.Errorf("oversize = %v, want 1", got)
				}
				return
			}
			if len(out) > max {
				t.Fatalf("record is %d bytes, max %d", len(out), max)
			}
			if !utf8.Valid(out) {
				t.Error("cut record is not valid UTF-8")
			}
			back, err := record.Unmarshal(out)
			if err != nil {
				t.Fatalf("the cut record does not decode: %v", err)
			}
			if !back.Flags.Truncated || back.ID != id || back.Audit.Verb != tc.wantVerb || back.Audit.ObjectRef == nil || back.Audit.ObjectRef.Namespace != "ns1" {
				t.Errorf("metadata lost: truncated=%v id=%.40s verb=%s ref=%v", back.Flags.Truncated, back.ID, back.Audit.Verb, back.Audit.ObjectRef)
			}
			if back.Audit.Annotations["authorization.k8s.io/decision"] != "allow" {
				t.Errorf("short annotation lost: %v", back.Audit.Annotations)
			}
			note := back.Audit.Annotations[TruncatedFieldsAnnotation]
			for _, w := range tc.wantCut {
				if !strings.Contains(note, w) {
					t.Errorf("annotation %q does not list %q", note, w)
				}
			}
			if want := record.KeyAudit(rec.Cluster, back.Audit.User.Username); rec.Key != want {
				t.Errorf("key %.60s does not follow the user name %.60s", rec.Key, want)
			}
			if got := testutil.ToFloat64(s.fitM.fitted); got != 1 {
				t.Errorf("fitted = %v, want 1", got)
			}
			if got := testutil.ToFloat64(s.oversize); got != 0 {
				t.Errorf("oversize = %v, want 0", got)
			}
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestCutLength(t *testing.T) {
	leaf := func(n int) strLeaf {
		s := strings.Repeat("x", n)
		return strLeaf{get: func() string { return s }}
	}
	tests := []struct {
		name   string
		lens   []int
		need   int
		want   int
		wantOK bool
	}{
		{"one long string", []int{10_000, 50}, 5_000, 5_000, true},
		{"two long strings share the cut", []int{10_000, 8_000, 50}, 6_000, 6_000, true},
		{"short strings untouched", []int{10_000, 200}, 9_000, 1_000, true},
		{"cannot save enough", []int{300, 300}, 1_000, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ls []strLeaf
			for _, n := range tc.lens {
				ls = append(ls, leaf(n))
			}
			got, ok := cutLength(ls, tc.need)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("cutLength = %d, %v; want %d, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// FuzzSizeToFit puts arbitrary strings into the fields size-to-fit cuts,
// under a small max_record_bytes. Apply must not fail or panic; a record
// marked truncated must fit, keep its ID and stay valid UTF-8 JSON that
// record.Unmarshal reads back.
func FuzzSizeToFit(f *testing.F) {
	f.Add("/api/v1/pods?q=aaaa", "kubectl", "note", 3000)
	f.Add("/x?"+strings.Repeat("<&>", 2000), "é\u2028\x01", "k", 8000)
	f.Add("", strings.Repeat("\u00e9", 5000), strings.Repeat("z", 300), 7000)
	const limit = 4096
	s := newSanitizer(f, nil, func(c *config.CollectorConfig) { c.Size.MaxRecordBytes = limit })
	f.Fuzz(func(t *testing.T, uri, agent, note string, pad int) {
		pad = min(max(pad, 0), 20_000)
		line := auditLine("get", uri+strings.Repeat("p", pad), "pods", "", "", "")
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			return
		}
		m["userAgent"] = agent
		m["annotations"].(map[string]any)[note] = strings.Repeat(note, 3)
		b, _ := json.Marshal(m)
		recs, errs := record.DecodeAll(b, "fuzz", record.DecodeOptions{Cluster: record.Cluster{Name: "c1"}})
		if len(errs) > 0 || len(recs) != 1 {
			return
		}
		rec := recs[0]
		id := rec.ID
		if err := s.Apply(rec); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		out, err := record.Marshal(rec)
		if err != nil {
			t.Fatalf("Marshal after Apply: %v", err)
		}
		if !rec.Flags.Truncated {
			return
		}
		if len(out) > limit || rec.ID != id {
			t.Fatalf("truncated record is %d bytes (max %d), id %q (was %q)", len(out), limit, rec.ID, id)
		}
		if _, err := record.Unmarshal(out); err != nil {
			t.Fatalf("truncated record does not decode: %v", err)
		}
	})
}
