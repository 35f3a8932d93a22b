package ecs

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
)

func testFindingDocs(t testing.TB) *FindingDocs {
	t.Helper()
	b, err := NewFindingDocs(config.Default().Sink.Elasticsearch)
	if err != nil {
		t.Fatal(err)
	}
	b.Now = func() time.Time { return fixedNow }
	return b
}

func testFinding(state posture.State, rv string) *Finding {
	return &Finding{Decision: posture.Decision{
		ID: "prod/posture-host-pid/u1", Cluster: "prod", State: state, CheckID: "posture-host-pid",
		Title: "Pod shares the host's PID namespace", CIS: []string{"5.2.3"}, CISVersion: "1.10",
		Severity: rules.SeverityHigh, Mitre: rules.Mitre{Tactics: []string{"privilege-escalation"}},
		Object:  posture.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "web", UID: "u1"},
		Message: "Deployment shop/web sets hostPID", Remediation: "Remove hostPID.", ResourceVersion: rv,
	}, At: fixedNow.Add(-time.Minute)}
}

func TestFindingVersion(t *testing.T) {
	tests := []struct {
		name  string
		state posture.State
		rv    string
		want  int64
		err   bool
	}{
		{"open", posture.StateOpen, "10", 20, false},
		{"reopened", posture.StateReopened, "11", 22, false},
		{"resolved wins over an open of the same revision (resolve by delete)", posture.StateResolved, "10", 21, false},
		{"etcd revisions are decimal, compared as numbers", posture.StateOpen, "9", 18, false},
		{"empty", posture.StateOpen, "", 0, true},
		{"zero", posture.StateOpen, "0", 0, true},
		{"negative", posture.StateOpen, "-3", 0, true},
		{"not a number", posture.StateOpen, "abc", 0, true},
		{"beyond the version range", posture.StateOpen, "9223372036854775807", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := testFinding(tc.state, tc.rv).Decision
			got, err := FindingVersion(&d)
			var fe *FieldError
			if tc.err {
				if !errors.As(err, &fe) || fe.Field != "observed_resource_version" {
					t.Fatalf("err = %v, want a FieldError naming observed_resource_version", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("FindingVersion = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
	// The sequence the state index must end in: open(10), resolved(12),
	// then a late open(11) must not win.
	open11, resolved12 := testFinding(posture.StateOpen, "11").Decision, testFinding(posture.StateResolved, "12").Decision
	v11, _ := FindingVersion(&open11)
	v12, _ := FindingVersion(&resolved12)
	if v11 >= v12 {
		t.Errorf("late open(11) version %d >= resolved(12) version %d", v11, v12)
	}
}

func TestFindingDocuments(t *testing.T) {
	b := testFindingDocs(t)
	opened := fixedNow.Add(-time.Hour)
	tests := []struct {
		name   string
		f      *Finding
		fields map[string]any // dotted path in the state document -> value
		absent []string
	}{
		{"open is its own first_seen and opened_at", testFinding(posture.StateOpen, "10"), map[string]any{
			"kubesift.finding.state": "open", "kubesift.finding.version": 20.0,
			"kubesift.finding.first_seen": "2026-01-02T03:03:05Z", "kubesift.finding.opened_at": "2026-01-02T03:03:05Z",
			"kubesift.finding.last_transition_at": "2026-01-02T03:03:05Z", "@timestamp": "2026-01-02T03:03:05Z",
			"kubesift.finding.severity": "high", "kubesift.finding.object.uid": "u1", "orchestrator.cluster.name": "prod",
			"orchestrator.resource.type": "deployment", "event.kind": "state",
		}, []string{"kubesift.finding.resolved_at", "kubesift.finding.actor", "data_stream"}},
		{"resolved carries the times its Decision carries", func() *Finding {
			f := testFinding(posture.StateResolved, "12")
			f.FirstSeen, f.OpenedAt = opened, opened
			return f
		}(), map[string]any{
			"kubesift.finding.state": "resolved", "kubesift.finding.version": 25.0,
			"kubesift.finding.first_seen": "2026-01-02T02:04:05Z", "kubesift.finding.opened_at": "2026-01-02T02:04:05Z",
			"kubesift.finding.resolved_at": "2026-01-02T03:03:05Z",
		}, nil},
		{"open takes the engine's times over At", func() *Finding {
			f := testFinding(posture.StateOpen, "10")
			f.FirstSeen, f.OpenedAt = opened, opened
			return f
		}(), map[string]any{
			"kubesift.finding.first_seen": "2026-01-02T02:04:05Z", "kubesift.finding.opened_at": "2026-01-02T02:04:05Z",
			"kubesift.finding.last_transition_at": "2026-01-02T03:03:05Z",
		}, []string{"kubesift.finding.resolved_at"}},
		{"reopened with an actor", func() *Finding {
			f := testFinding(posture.StateReopened, "14")
			f.FirstSeen = opened
			f.Actor = &Actor{User: "alice", Groups: []string{"devs"}, UserAgent: "kubectl/v1.31", SourceIP: "10.0.0.7", AuditID: "a1"}
			return f
		}(), map[string]any{
			"kubesift.finding.state": "reopened", "kubesift.finding.opened_at": "2026-01-02T03:03:05Z",
			"kubesift.finding.first_seen": "2026-01-02T02:04:05Z", "kubesift.finding.actor.user": "alice",
			"kubesift.finding.actor.audit_id": "a1",
		}, []string{"kubesift.finding.resolved_at"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := b.FindingState(tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if st.Index != config.DefaultFindingsIndex || st.ID != tc.f.ID || st.Version <= 0 {
				t.Errorf("state doc %s/%s version %d", st.Index, st.ID, st.Version)
			}
			var doc map[string]any
			json.Unmarshal(st.Body, &doc)
			for p, want := range tc.fields {
				if got := field(doc, p); got != want {
					t.Errorf("%s = %v, want %v", p, got, want)
				}
			}
			for _, p := range tc.absent {
				if got := field(doc, p); got != nil {
					t.Errorf("%s = %v, want absent", p, got)
				}
			}
			checkMapped(t, st.Body, MergeMappings(BaseMappings(), FindingsMappings()))

			tr, err := b.FindingTransition(tc.f)
			if err != nil {
				t.Fatal(err)
			}
			wantID := tc.f.ID + "/" + string(tc.f.State) + "/" + tc.f.ResourceVersion
			if tr.Index != config.DefaultFindingTransitionsStream || tr.ID != wantID || tr.Version != 0 {
				t.Errorf("transition doc %s/%s version %d, want %s with create", tr.Index, tr.ID, tr.Version, wantID)
			}
			var tdoc map[string]any
			json.Unmarshal(tr.Body, &tdoc)
			if field(tdoc, "data_stream.dataset") != "kubesift.finding_transitions" || field(tdoc, "event.kind") != "event" {
				t.Errorf("transition doc: %s", tr.Body)
			}
			checkMapped(t, tr.Body, MergeMappings(BaseMappings(), FindingsMappings()))
		})
	}
}

func TestFindingErrorsNameTheField(t *testing.T) {
	b := testFindingDocs(t)
	tests := []struct {
		name  string
		mod   func(f *Finding)
		field string
	}{
		{"no id", func(f *Finding) { f.ID = "" }, "id"},
		{"no check", func(f *Finding) { f.CheckID = "" }, "check_id"},
		{"no cluster", func(f *Finding) { f.Cluster = "" }, "cluster"},
		{"no object uid", func(f *Finding) { f.Object.UID = "" }, "object.uid"},
		{"unknown state", func(f *Finding) { f.State = "maybe" }, "state"},
		{"opaque resourceVersion", func(f *Finding) { f.ResourceVersion = "abc" }, "observed_resource_version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := testFinding(posture.StateOpen, "10")
			tc.mod(f)
			for _, build := range []func(*Finding) error{
				func(f *Finding) error { _, err := b.FindingState(f); return err },
				func(f *Finding) error { _, err := b.FindingTransition(f); return err },
			} {
				var fe *FieldError
				if err := build(f); !errors.As(err, &fe) || fe.Field != tc.field {
					t.Errorf("err = %v, want a FieldError naming %s", err, tc.field)
				}
			}
		})
	}
	if _, err := b.FindingState(nil); err == nil {
		t.Error("nil finding accepted")
	}
}

func TestScoreDocument(t *testing.T) {
	b := testFindingDocs(t)
	s := posture.Score{Passed: 8, Failed: 2, PassedWeight: 30, Weight: 42, Percent: 100 * 30.0 / 42}
	tests := []struct{ namespace, scope string }{{"", "cluster"}, {"shop", "namespace"}}
	for _, tc := range tests {
		d, err := b.Score("prod", tc.namespace, s, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Index != config.DefaultPostureScoresStream || !strings.HasPrefix(d.ID, "prod/"+tc.namespace+"/") {
			t.Errorf("score doc %s/%s", d.Index, d.ID)
		}
		var doc map[string]any
		json.Unmarshal(d.Body, &doc)
		if field(doc, "kubesift.posture_score.scope") != tc.scope || field(doc, "kubesift.posture_score.failed") != 2.0 ||
			field(doc, "@timestamp") != "2026-01-02T03:04:05Z" {
			t.Errorf("score doc: %s", d.Body)
		}
		checkMapped(t, d.Body, MergeMappings(BaseMappings(), ScoresMappings()))
	}
	if _, err := b.Score("", "", s, time.Time{}); err == nil {
		t.Error("score without a cluster accepted")
	}
}

// FuzzFinding: any Decision either builds valid JSON documents with a
// positive version (resolved odd, others even) or fails with a FieldError.
func FuzzFinding(f *testing.F) {
	f.Add("prod/c/u", "open", "10", "msg")
	f.Add("prod/c/u", "resolved", "9223372036854775806", "\xff")
	f.Add("", "reopened", "-1", "")
	f.Add("x", "open", "0x10", "a\nb")
	b := testFindingDocs(f)
	f.Fuzz(func(t *testing.T, id, state, rv, msg string) {
		fd := testFinding(posture.State(state), rv)
		fd.ID, fd.Message = id, msg
		st, err := b.FindingState(fd)
		tr, err2 := b.FindingTransition(fd)
		var fe *FieldError
		if err != nil || err2 != nil {
			if !errors.As(err, &fe) || !errors.As(err2, &fe) {
				t.Fatalf("errors %v / %v are not both FieldErrors", err, err2)
			}
			return
		}
		if !json.Valid(st.Body) || !json.Valid(tr.Body) || strings.ContainsAny(string(st.Body)+string(tr.Body), "\n\r") {
			t.Fatalf("invalid documents: %q %q", st.Body, tr.Body)
		}
		if st.Version <= 0 || (st.Version%2 == 1) != (fd.State == posture.StateResolved) {
			t.Fatalf("version %d for state %q", st.Version, fd.State)
		}
	})
}

func TestCISSections(t *testing.T) {
	tests := []struct {
		in   []string
		want []string
	}{
		{nil, nil},
		{[]string{"5.2.2"}, []string{"5.2"}},
		{[]string{"5.1.5", "5.1.6", "5.2.1"}, []string{"5.1", "5.2"}},
		{[]string{"1.2.16", "1.2.1"}, []string{"1.2"}},
		{[]string{"5.7"}, []string{"5.7"}},
	}
	for _, tc := range tests {
		if got := cisSections(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("cisSections(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
