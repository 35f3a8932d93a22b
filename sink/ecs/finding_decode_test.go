package ecs

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
)

func decodeTestDocs(t testing.TB) *FindingDocs {
	t.Helper()
	fd, err := NewFindingDocs(config.Default().Sink.Elasticsearch)
	if err != nil {
		t.Fatal(err)
	}
	fd.Now = func() time.Time { return time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC) }
	return fd
}

func decodeTestDecision(state posture.State, rv string) posture.Decision {
	return posture.Decision{ID: "prod/k8s-privileged/u1", Cluster: "prod", State: state, CheckID: "k8s-privileged",
		Title: "Privileged container", CIS: []string{"5.2.2"}, CISVersion: "1.9", Severity: rules.SeverityHigh,
		Mitre: rules.Mitre{Tactics: []string{"privilege-escalation"}}, Object: posture.ObjectRef{Kind: "Pod", Namespace: "shop", Name: "a", UID: "u1"},
		Message: "container x is privileged", Remediation: "drop privileged", ResourceVersion: rv,
		FirstSeen: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), OpenedAt: time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC),
		Actor: &posture.Actor{User: "alice", Verb: "patch", Groups: []string{"dev"}, AuditID: "a-1", AuditIndex: "logs-kubesift.audit-default", AuditDocID: "d1"}}
}

// TestDecodeFindingState: a state document FindingState wrote reads back
// as its Decision and version; documents it would not have written are
// refused with the field named.
func TestDecodeFindingState(t *testing.T) {
	fd := decodeTestDocs(t)
	for _, st := range []posture.State{posture.StateOpen, posture.StateResolved, posture.StateReopened} {
		want := decodeTestDecision(st, "42")
		doc, err := fd.FindingState(&Finding{Decision: want})
		if err != nil {
			t.Fatal(err)
		}
		got, v, err := DecodeFindingState(doc.Body)
		if err != nil {
			t.Fatalf("%s: %v", st, err)
		}
		if !reflect.DeepEqual(got, want) || v != doc.Version {
			t.Fatalf("%s: got %+v version %d\nwant %+v version %d", st, got, v, want, doc.Version)
		}
	}
	bad := []struct {
		name, body, field string
	}{
		{"not JSON", `{"kubesift":`, "finding"},
		{"no id", `{"orchestrator":{"cluster":{"name":"p"}},"kubesift":{"finding":{"state":"open","check_id":"c","severity":"high","object":{"uid":"u"},"observed_resource_version":"1"}}}`, "id"},
		{"no cluster", `{"kubesift":{"finding":{"id":"i","state":"open","check_id":"c","severity":"high","object":{"uid":"u"},"observed_resource_version":"1"}}}`, "cluster"},
		{"bad state", `{"orchestrator":{"cluster":{"name":"p"}},"kubesift":{"finding":{"id":"i","state":"gone","check_id":"c","severity":"high","object":{"uid":"u"},"observed_resource_version":"1"}}}`, "state"},
		{"bad severity", `{"orchestrator":{"cluster":{"name":"p"}},"kubesift":{"finding":{"id":"i","state":"open","check_id":"c","severity":"dire","object":{"uid":"u"},"observed_resource_version":"1"}}}`, "severity"},
		{"bad revision", `{"orchestrator":{"cluster":{"name":"p"}},"kubesift":{"finding":{"id":"i","state":"open","check_id":"c","severity":"high","object":{"uid":"u"},"observed_resource_version":"-3"}}}`, "observed_resource_version"},
		{"version of another state", `{"orchestrator":{"cluster":{"name":"p"}},"kubesift":{"finding":{"id":"i","state":"open","check_id":"c","severity":"high","object":{"uid":"u"},"observed_resource_version":"4","version":9}}}`, "version"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := DecodeFindingState([]byte(tc.body))
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("err %v, want a FieldError on %q", err, tc.field)
			}
		})
	}
}

// FuzzDecodeFindingState: any input is decoded or refused with a field
// named, never a panic; what decodes is written back by FindingState with
// the same version, and decodes again to the same Decision.
func FuzzDecodeFindingState(f *testing.F) {
	fd := decodeTestDocs(f)
	for _, st := range []posture.State{posture.StateOpen, posture.StateResolved} {
		d := decodeTestDecision(st, "7")
		doc, err := fd.FindingState(&Finding{Decision: d})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(doc.Body)
	}
	f.Add([]byte(`{"kubesift":{"finding":{"severity":"high","version":1e99}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		d, v, err := DecodeFindingState(body)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("error without a field: %v", err)
			}
			return
		}
		doc, err := fd.FindingState(&Finding{Decision: d})
		if err != nil {
			t.Fatalf("decoded %+v, but FindingState refuses it: %v", d, err)
		}
		if doc.Version != v {
			t.Fatalf("version %d, written back as %d", v, doc.Version)
		}
		again, _, err := DecodeFindingState(doc.Body)
		if err != nil || !reflect.DeepEqual(normalised(again), normalised(d)) {
			t.Fatalf("round trip: %+v (%v), want %+v", again, err, d)
		}
	})
}

// normalised treats empty and nil lists alike (omitempty drops both).
func normalised(d posture.Decision) posture.Decision {
	if len(d.CIS) == 0 {
		d.CIS = nil
	}
	if len(d.Mitre.Tactics) == 0 {
		d.Mitre.Tactics = nil
	}
	if len(d.Mitre.Techniques) == 0 {
		d.Mitre.Techniques = nil
	}
	return d
}
