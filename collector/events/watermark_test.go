package events

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestParseWatermark(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)
	good := Watermark{ResourceVersion: 18446744073709551615, EventTime: at, ClusterUID: "u", Scope: "sha256:x", Writer: "pod-a", Updated: at}
	tests := []struct {
		name, in string
		want     Watermark
		err      string
	}{
		{name: "round trip", in: good.Format(), want: good},
		{name: "minimal", in: `{"v":1,"rv":"7"}`, want: Watermark{ResourceVersion: 7}},
		{name: "version", in: `{"v":2,"rv":"7"}`, err: "version 2"},
		{name: "no rv", in: `{"v":1}`, err: "rv"},
		{name: "leading zero", in: `{"v":1,"rv":"07"}`, err: "rv"},
		{name: "zero", in: `{"v":1,"rv":"0"}`, err: "rv"},
		{name: "negative", in: `{"v":1,"rv":"-1"}`, err: "rv"},
		{name: "overflow", in: `{"v":1,"rv":"18446744073709551616"}`, err: "rv"},
		{name: "rv as number", in: `{"v":1,"rv":7}`, err: "cannot unmarshal"},
		{name: "unknown field", in: `{"v":1,"rv":"7","x":1}`, err: "unknown field"},
		{name: "trailing", in: `{"v":1,"rv":"7"}{}`, err: "trailing"},
		{name: "bad time", in: `{"v":1,"rv":"7","event_time":"yesterday"}`, err: "event_time"},
		{name: "time before year 0000 in UTC", in: `{"v":1,"rv":"7","event_time":"0000-01-01T00:00:00+01:00"}`, err: "outside 0000-9999"},
		{name: "updated before year 0000 in UTC", in: `{"v":1,"rv":"7","updated":"0000-01-01T00:30:00+01:00"}`, err: "updated"},
		{name: "not json", in: `rv=7`, err: "invalid character"},
		{name: "empty", in: ``, err: "EOF"},
		{name: "huge", in: `{"v":1,"rv":"7","writer":"` + strings.Repeat("x", 5000) + `"}`, err: "bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseWatermark(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.EventTime.Equal(tc.want.EventTime) || !got.Updated.Equal(tc.want.Updated) {
				t.Errorf("times %v %v, want %v %v", got.EventTime, got.Updated, tc.want.EventTime, tc.want.Updated)
			}
			got.EventTime, got.Updated, tc.want.EventTime, tc.want.Updated = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzParseWatermark: the annotation parser never panics, and what it
// accepts formats back to something it parses to the same watermark.
func FuzzParseWatermark(f *testing.F) {
	f.Add(`{"v":1,"rv":"7"}`)
	f.Add(Watermark{ResourceVersion: 123, EventTime: time.Unix(1, 2), ClusterUID: "u", Scope: "s", Writer: "w", Updated: time.Unix(3, 4)}.Format())
	f.Add(`{"v":1,"rv":"99999999999999999999"}`)
	f.Add(`{"v":1,"rv":"1","event_time":"2026-01-01T00:00:00+02:00"}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWatermark(s)
		if err != nil {
			return
		}
		if w.ResourceVersion == 0 {
			t.Fatalf("accepted a zero resourceVersion from %q", s)
		}
		again, err := ParseWatermark(w.Format())
		if err != nil {
			t.Fatalf("Format of an accepted watermark does not parse: %v (from %q)", err, s)
		}
		if again.ResourceVersion != w.ResourceVersion || again.ClusterUID != w.ClusterUID || again.Scope != w.Scope ||
			again.Writer != w.Writer || !again.EventTime.Equal(w.EventTime) || !again.Updated.Equal(w.Updated) {
			t.Fatalf("round trip changed %+v to %+v", w, again)
		}
	})
}

// TestLeaseStore: create, advance, never go backwards, keep other
// annotations.
func TestLeaseStore(t *testing.T) {
	f := newFakeCluster(t)
	s := &leaseStore{leases: f.client.CoordinationV1(), namespace: testNS, name: "wm", identity: "me"}
	ctx := context.Background()
	if _, found, err := s.load(ctx); err != nil || found {
		t.Fatalf("load before any write: found %v, err %v", found, err)
	}
	steps := []struct {
		rv    uint64
		scope string
		wrote bool
		want  uint64
	}{
		{rv: 10, scope: "a", wrote: true, want: 10},
		{rv: 20, scope: "a", wrote: true, want: 20},
		{rv: 15, scope: "a", wrote: false, want: 20}, // never backwards
		{rv: 5, scope: "b", wrote: true, want: 5},    // another scope replaces it
	}
	for i, st := range steps {
		wrote, err := s.save(ctx, Watermark{ResourceVersion: st.rv, Scope: st.scope, ClusterUID: "c"})
		if err != nil {
			t.Fatal(err)
		}
		w, found, err := s.load(ctx)
		if err != nil || !found || wrote != st.wrote || w.ResourceVersion != st.want {
			t.Errorf("step %d: wrote %v, stored %d (found %v, err %v); want wrote %v, %d", i, wrote, w.ResourceVersion, found, err, st.wrote, st.want)
		}
		if i == 0 {
			l, _ := f.client.CoordinationV1().Leases(testNS).Get(ctx, "wm", metav1.GetOptions{})
			l.Annotations["other"] = "kept"
			if _, err := f.client.CoordinationV1().Leases(testNS).Update(ctx, l, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	l, _ := f.client.CoordinationV1().Leases(testNS).Get(ctx, "wm", metav1.GetOptions{})
	if l.Annotations["other"] != "kept" || *l.Spec.HolderIdentity != "me" {
		t.Errorf("lease %+v", l.ObjectMeta)
	}
}

func TestScopeOf(t *testing.T) {
	base := scopeOf([]string{"a", "b"}, "type=Warning", "")
	tests := []struct {
		name string
		got  string
		same bool
	}{
		{"order of namespaces does not matter", scopeOf([]string{"b", "a"}, "type=Warning", ""), true},
		{"another namespace", scopeOf([]string{"a"}, "type=Warning", ""), false},
		{"another field selector", scopeOf([]string{"a", "b"}, "", ""), false},
		{"another label selector", scopeOf([]string{"a", "b"}, "type=Warning", "x=y"), false},
		{"no ambiguity between fields", scopeOf([]string{"a", "b"}, "", "type=Warning"), false},
	}
	for _, tc := range tests {
		if (tc.got == base) != tc.same {
			t.Errorf("%s: %s vs %s", tc.name, tc.got, base)
		}
	}
}
