package redact

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

func objectRecord(t *testing.T, obj string) *record.Record {
	t.Helper()
	ref := record.ObjectRef{APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "p", UID: "u", ResourceVersion: "1"}
	r, err := record.NewObject(ref, []byte(obj), record.Cluster{Name: "c"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestApplyObject(t *testing.T) {
	long := strings.Repeat("x", 10000)
	pod := `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"ns","uid":"u","resourceVersion":"1"},` +
		`"spec":{"containers":[{"name":"c","image":"nginx","env":[{"name":"DB_PASSWORD","value":"hunter2"},{"name":"MODE","value":"prod"}]}]}}`
	big := `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"ns","uid":"u","resourceVersion":"1",` +
		`"annotations":{"note":"` + long + `"}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}`
	tests := []struct {
		name          string
		obj           string
		wantRedacted  string // a kind in flags.redacted, "" for none
		wantGone      string // must not be in the published object
		wantKept      string // must still be in it
		wantTruncated bool
	}{
		{name: "credential env value", obj: pod, wantRedacted: KindEnvValue, wantGone: "hunter2", wantKept: `"prod"`},
		{name: "plain object untouched", obj: `{"kind":"Pod","metadata":{"name":"p"},"spec":{}}`, wantKept: `"spec":{}`},
		{name: "oversize cut to fit", obj: big, wantGone: long, wantKept: `"name":"p"`, wantTruncated: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			s := newSanitizer(t, reg, func(c *config.CollectorConfig) { c.Size.MaxRecordBytes = 6000 })
			r := objectRecord(t, tc.obj)
			if err := s.Apply(r); err != nil {
				t.Fatal(err)
			}
			got := string(r.Object)
			if !json.Valid(r.Object) {
				t.Fatalf("not JSON: %s", got)
			}
			if tc.wantGone != "" && strings.Contains(got, tc.wantGone) {
				t.Errorf("%q still published", tc.wantGone[:min(len(tc.wantGone), 20)])
			}
			if !strings.Contains(got, tc.wantKept) {
				t.Errorf("%q lost: %.300s", tc.wantKept, got)
			}
			if tc.wantRedacted != "" && (len(r.Flags.Redacted) != 1 || r.Flags.Redacted[0] != tc.wantRedacted) {
				t.Errorf("flags.redacted = %v, want [%s]", r.Flags.Redacted, tc.wantRedacted)
			}
			if r.Flags.Truncated != tc.wantTruncated {
				t.Errorf("flags.truncated = %v", r.Flags.Truncated)
			}
			if tc.wantTruncated {
				if !strings.Contains(got, TruncatedFieldsAnnotation) || testenv.Metric(t, reg, "kubesift_collector_fitted_total") != 1 {
					t.Errorf("the cut is not annotated or counted: %.300s", got)
				}
			}
		})
	}
}

func TestApplyObjectTombstone(t *testing.T) {
	ref := record.ObjectRef{APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "p", UID: "u", ResourceVersion: "1"}
	r, err := record.NewObjectTombstone(ref, record.Cluster{Name: "c"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := newSanitizer(t, nil).Apply(r); err != nil || r.Object != nil {
		t.Fatalf("a tombstone must pass unchanged: %v %q", err, r.Object)
	}
}
