package posture

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/record"
)

// objectRecord builds the record the objects source publishes for o.
func objectRecord(t testing.TB, o Object) *record.Record {
	t.Helper()
	raw, err := json.Marshal(o.Body)
	if err != nil {
		t.Fatal(err)
	}
	r, err := record.NewObject(record.ObjectRef{APIVersion: o.APIVersion, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name,
		UID: o.UID, ResourceVersion: o.ResourceVersion}, raw, record.Cluster{Name: "prod"}, time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestObjectFromRecord(t *testing.T) {
	dep := obj(t, goodDeployment)
	tomb, err := record.NewObjectTombstone(record.ObjectRef{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop",
		Name: "web", UID: dep.UID, ResourceVersion: "9"}, record.Cluster{Name: "prod"}, time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	parsedTomb, err := record.ParseTombstone([]byte(tomb.Key), []record.Header{
		{Key: record.HeaderID, Value: []byte(tomb.ID)}, {Key: record.HeaderSource, Value: []byte("object")}})
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(r *record.Record)) *record.Record {
		r := objectRecord(t, dep)
		f(r)
		return r
	}
	tests := []struct {
		name        string
		rec         *record.Record
		want        Object
		wantDeleted bool
		wantErr     string // a field name; "" for success
	}{
		{name: "object", rec: objectRecord(t, dep), want: dep},
		{name: "tombstone", rec: tomb, wantDeleted: true, want: Object{APIVersion: "apps/v1", Kind: "Deployment",
			Namespace: "shop", Name: "web", UID: dep.UID, ResourceVersion: "9"}},
		{name: "tombstone read from Kafka", rec: parsedTomb, wantDeleted: true, want: Object{Kind: "Deployment",
			Namespace: "shop", Name: "web", UID: dep.UID, ResourceVersion: "9"}},
		{name: "audit record", rec: mutate(func(r *record.Record) { r.Source = record.SourceAudit }), wantErr: "source"},
		{name: "bad key", rec: mutate(func(r *record.Record) { r.Key = "prod/Deployment" }), wantErr: "key"},
		{name: "id without resourceVersion", rec: mutate(func(r *record.Record) { r.ID = dep.UID }), wantErr: "id"},
		{name: "id with empty uid", rec: mutate(func(r *record.Record) { r.ID = ":5" }), wantErr: "id"},
		{name: "body not an object", rec: mutate(func(r *record.Record) { r.Object = []byte(`[1]`) }), wantErr: "object"},
		{name: "body null", rec: mutate(func(r *record.Record) { r.Object = []byte(`null`) }), wantErr: "object"},
		{name: "no body", rec: mutate(func(r *record.Record) { r.Object = nil }), wantErr: "object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, deleted, err := ObjectFromRecord(tc.rec)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), ": "+tc.wantErr+": ") {
					t.Fatalf("err = %v, want ErrInvalid naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || deleted != tc.wantDeleted {
				t.Fatalf("deleted %v, err %v; want deleted %v", deleted, err, tc.wantDeleted)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestRecordPathAgreesWithDirectApply: objects judged through their records
// (ObjectsFromRecords, then Replace) give the same findings as the objects
// themselves; a tombstone through ObjectFromRecord resolves them as Delete
// does. A bad record costs only itself.
func TestRecordPathAgreesWithDirectApply(t *testing.T) {
	set := builtin(t)
	bad := obj(t, goodDeployment)
	bad = with(t, bad, "spec.template.spec.hostPID", true)
	objs := append(goodShop(t), bad)
	recs := []*record.Record{{Key: "prod/Pod/x/y", Source: record.SourceObject, ID: "nouid"}}
	for _, o := range objs {
		recs = append(recs, objectRecord(t, o))
	}
	direct, viaRecords := New(set), New(set)
	if _, err := direct.Replace("prod", objs); err != nil {
		t.Fatal(err)
	}
	fromRecs, errs := ObjectsFromRecords(recs)
	if len(errs) != 1 || len(fromRecs) != len(objs) {
		t.Fatalf("%d objects, errors %v; want %d and one error", len(fromRecs), errs, len(objs))
	}
	if _, err := viaRecords.Replace("prod", fromRecs); err != nil {
		t.Fatal(err)
	}
	want, got := direct.Findings("prod"), viaRecords.Findings("prod")
	if !reflect.DeepEqual(ids(got, ""), ids(want, "")) || !has(got, "posture-host-pid", bad.UID) {
		t.Fatalf("via records %v\ndirect %v", ids(got, ""), ids(want, ""))
	}
	tomb, err := record.NewObjectTombstone(record.ObjectRef{APIVersion: "apps/v1", Kind: bad.Kind, Namespace: bad.Namespace,
		Name: bad.Name, UID: bad.UID, ResourceVersion: bad.ResourceVersion}, record.Cluster{Name: "prod"}, time.Unix(2, 0))
	if err != nil {
		t.Fatal(err)
	}
	o, deleted, err := ObjectFromRecord(tomb)
	if err != nil || !deleted {
		t.Fatalf("tombstone: deleted %v, err %v", deleted, err)
	}
	ds := viaRecords.Delete(tomb.Cluster.Name, o.Kind, o.Namespace, o.Name)
	if !has(ds, "posture-host-pid", bad.UID) || has(viaRecords.Findings("prod"), "posture-host-pid", bad.UID) {
		t.Errorf("delete through the tombstone: %v", ids(ds, bad.UID))
	}
}

func FuzzObjectFromRecord(f *testing.F) {
	f.Add("prod/Pod/web/api", "u-1:42", []byte(`{"metadata":{"name":"api"}}`))
	f.Add("prod/Namespace//web", "u:1", []byte(`{}`))
	f.Add("x", ":", []byte(`[`))
	eng := New(builtin(f))
	f.Fuzz(func(t *testing.T, key, id string, body []byte) {
		r := &record.Record{Source: record.SourceObject, Key: key, ID: id, Object: body}
		o, deleted, err := ObjectFromRecord(r)
		if err != nil || deleted {
			return
		}
		if _, err := eng.Apply("prod", o); err != nil && !strings.Contains(err.Error(), "posture:") {
			t.Errorf("engine error without context: %v", err)
		}
	})
}

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
