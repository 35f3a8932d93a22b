package record

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var testObjRef = ObjectRef{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "web", Name: "front", UID: "u-1", ResourceVersion: "42"}

func TestNewObject(t *testing.T) {
	c := Cluster{Name: "prod", UID: "ks"}
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.FixedZone("x", 3600))
	cases := []struct {
		name      string
		mod       func(*ObjectRef)
		raw       string
		wantField string
	}{
		{name: "ok", raw: `{"kind":"Deployment"}`},
		{name: "cluster-scoped", mod: func(o *ObjectRef) { o.Namespace = "" }, raw: `{}`},
		{name: "no uid", mod: func(o *ObjectRef) { o.UID = "" }, raw: `{}`, wantField: "metadata.uid"},
		{name: "no rv", mod: func(o *ObjectRef) { o.ResourceVersion = "" }, raw: `{}`, wantField: "metadata.resourceVersion"},
		{name: "no kind", mod: func(o *ObjectRef) { o.Kind = "" }, raw: `{}`, wantField: "kind"},
		{name: "no name", mod: func(o *ObjectRef) { o.Name = "" }, raw: `{}`, wantField: "metadata.name"},
		{name: "no api version", mod: func(o *ObjectRef) { o.APIVersion = "" }, raw: `{}`, wantField: "apiVersion"},
		{name: "not an object", raw: `[1]`, wantField: "object"},
		{name: "empty", raw: ``, wantField: "object"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ref := testObjRef
			if tc.mod != nil {
				tc.mod(&ref)
			}
			r, err := NewObject(ref, []byte(tc.raw), c, at)
			if tc.wantField != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tc.wantField {
					t.Fatalf("err = %v, want a FieldError on %s", err, tc.wantField)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantKey := "prod/Deployment/" + ref.Namespace + "/front"
			if r.ID != "u-1:42" || r.Key != wantKey || r.Source != SourceObject || r.APIVersion != "apps/v1" ||
				!r.EventTime.Equal(at) || r.EventTime.Location() != time.UTC || r.Deleted {
				t.Fatalf("record = %+v", r)
			}
			b, err := Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Unmarshal(b)
			if err != nil || back.ID != r.ID || string(back.Object) != tc.raw {
				t.Fatalf("round trip: %v %+v", err, back)
			}
		})
	}
}

func TestObjectTombstone(t *testing.T) {
	c := Cluster{Name: "prod"}
	r, err := NewObjectTombstone(testObjRef, c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !r.Deleted || r.Object != nil || r.ID != "u-1:42" || r.Key != "prod/Deployment/web/front" {
		t.Fatalf("tombstone = %+v", r)
	}
	if _, err := Marshal(r); err == nil {
		t.Fatal("Marshal encoded a tombstone")
	}
	back, err := ParseTombstone([]byte(r.Key), Headers(r))
	if err != nil {
		t.Fatal(err)
	}
	if back.ID != r.ID || back.Key != r.Key || back.Cluster.Name != "prod" || back.Source != SourceObject || !back.Deleted {
		t.Fatalf("parsed = %+v", back)
	}
}

func TestParseTombstoneRejects(t *testing.T) {
	good := []Header{{Key: HeaderID, Value: []byte("u:1")}, {Key: HeaderSource, Value: []byte("object")}, {Key: HeaderCluster, Value: []byte("prod")}}
	cases := []struct {
		name      string
		key       string
		headers   []Header
		wantField string
	}{
		{"short key", "prod/Pod/x", good, "key"},
		{"no name", "prod/Pod/ns/", good, "key"},
		{"no cluster", "/Pod/ns/a", good, "key"},
		{"audit source", "prod/Pod/ns/a", []Header{{Key: HeaderID, Value: []byte("u:1")}, {Key: HeaderSource, Value: []byte("audit")}}, "header kubesift-source"},
		{"no id", "prod/Pod/ns/a", good[1:], "header kubesift-id"},
		{"other cluster", "dev/Pod/ns/a", good, "header kubesift-cluster"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTombstone([]byte(tc.key), tc.headers)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.wantField {
				t.Fatalf("err = %v, want a FieldError on %s", err, tc.wantField)
			}
		})
	}
}

// FuzzParseTombstone: any key and headers either parse into a tombstone
// whose key round-trips, or fail with a FieldError; never a panic.
func FuzzParseTombstone(f *testing.F) {
	f.Add("prod/Pod/ns/a", "u:1", "object")
	f.Add("prod/ClusterRole//admin", "u:2", "object")
	f.Add("////", "", "audit")
	f.Fuzz(func(t *testing.T, key, id, source string) {
		r, err := ParseTombstone([]byte(key), []Header{{Key: HeaderID, Value: []byte(id)}, {Key: HeaderSource, Value: []byte(source)}})
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T: %v", err, err)
			}
			return
		}
		c, kind, ns, name, err := ParseObjectKey(r.Key)
		if err != nil || KeyObjectRef(Cluster{Name: c}, kind, ns, name) != key || r.ID != id {
			t.Fatalf("key %q does not round-trip: %v", key, err)
		}
	})
}

// TestInitialListRoundTrip: the initial-list mark survives the wire, and a
// record without it writes no field at all.
func TestInitialListRoundTrip(t *testing.T) {
	for _, initial := range []bool{false, true} {
		r, err := NewObject(testObjRef, []byte(`{"kind":"Deployment"}`), Cluster{Name: "prod"}, time.Unix(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		r.InitialList = initial
		b, err := Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Unmarshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.InitialList != initial {
			t.Errorf("initial_list %v read back as %v from %s", initial, got.InitialList, b)
		}
		if !initial && strings.Contains(string(b), "initial_list") {
			t.Errorf("unmarked record writes initial_list: %s", b)
		}
	}
}
