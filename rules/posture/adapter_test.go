package posture

import (
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/record"
)

func TestObjectFromRecord(t *testing.T) {
	c := record.Cluster{Name: "prod"}
	ref := record.ObjectRef{APIVersion: "v1", Kind: "Pod", Namespace: "web", Name: "api", UID: "u-1", ResourceVersion: "42"}
	good, err := record.NewObject(ref, []byte(`{"metadata":{"name":"api"},"spec":{}}`), c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tomb, err := record.NewObjectTombstone(ref, c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	with := func(f func(r *record.Record)) *record.Record { r := *good; f(&r); return &r }
	tests := []struct {
		name    string
		rec     *record.Record
		wantErr string
	}{
		{"object", good, ""},
		{"nil", nil, "nil"},
		{"tombstone", tomb, "tombstone"},
		{"audit record", with(func(r *record.Record) { r.Source = record.SourceAudit }), "source"},
		{"bad key", with(func(r *record.Record) { r.Key = "prod/Pod" }), "key"},
		{"bad id", with(func(r *record.Record) { r.ID = "u-1" }), "id:"},
		{"array body", with(func(r *record.Record) { r.Object = []byte(`[1]`) }), "object: not a JSON object"},
		{"null body", with(func(r *record.Record) { r.Object = []byte(`null`) }), "object: not a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ObjectFromRecord(tc.rec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Kind != "Pod" || o.Namespace != "web" || o.Name != "api" || o.UID != "u-1" || o.ResourceVersion != "42" ||
				o.APIVersion != "v1" || o.Body["spec"] == nil {
				t.Errorf("got %+v", o)
			}
		})
	}
}

// FuzzObjectFromRecord: any key, id and body is an Object or an error,
// never a panic, and an Object is one the engine accepts or rejects by name.
func FuzzObjectFromRecord(f *testing.F) {
	f.Add("prod/Pod/web/api", "u-1:42", []byte(`{"metadata":{"name":"api"}}`))
	f.Add("prod/Namespace//web", "u:1", []byte(`{}`))
	f.Add("x", ":", []byte(`[`))
	eng := New(builtin(f))
	f.Fuzz(func(t *testing.T, key, id string, body []byte) {
		r := &record.Record{Source: record.SourceObject, Key: key, ID: id, Object: body}
		o, err := ObjectFromRecord(r)
		if err != nil {
			return
		}
		if _, err := eng.Apply("prod", o); err != nil && !strings.Contains(err.Error(), "posture:") {
			t.Errorf("engine error without context: %v", err)
		}
	})
}

// TestForget: a forgotten cluster has no findings and no inventory left,
// so its next Replace after Restore decides as a fresh process would;
// other clusters keep theirs.
func TestForget(t *testing.T) {
	e := New(builtin(t))
	objs := goodShop(t)
	if _, err := e.Replace("a", objs); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Replace("b", objs); err != nil {
		t.Fatal(err)
	}
	before := len(e.Findings("a"))
	e.Forget("a")
	e.Forget("never-seen")
	if n := len(e.Findings("a")); n != 0 {
		t.Errorf("%d findings after Forget, want 0", n)
	}
	if n := len(e.Findings("b")); n != before {
		t.Errorf("cluster b: %d findings, want %d", n, before)
	}
	if total, _ := e.Score("a"); total.Weight != 0 {
		t.Errorf("score of a forgotten cluster: %+v", total)
	}
}
