package elasticsearch

import (
	"context"
	"reflect"
	"testing"

	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/sink/ecs"
)

var actorB = &posture.Actor{User: "alice", Groups: []string{"dev"}, UserAgent: "kubectl/v1.33", SourceIP: "10.0.0.7",
	AuditID: "a-1", AuditIndex: ".ds-logs-audit-1", AuditDocID: "a-1:ResponseComplete"}

// TestFindingStatesOnRealElasticsearch: FindingStates returns the last
// state written of every finding of one cluster and nothing of another,
// across pages, with the actor each was written with and the opened_at of open ones, and a
// findings index not created yet reads as empty.
func TestFindingStatesOnRealElasticsearch(t *testing.T) {
	es, fw, cfg := realFindings(t)
	defer func(n int) { statesPage = n }(statesPage)
	statesPage = 2 // three findings of "c" take two pages
	withActor := finding("c", "b", posture.StateOpen, "11")
	withActor.Actor = actorB
	writeFindings(t, fw,
		finding("c", "a", posture.StateOpen, "10"), withActor,
		finding("c", "x", posture.StateOpen, "12"), finding("other", "d", posture.StateOpen, "13"))
	writeFindings(t, fw, finding("c", "a", posture.StateResolved, "14"))
	writeFindings(t, fw, finding("c", "x", posture.StateReopened, "16"))

	tests := []struct {
		name    string
		index   string
		cluster string
		want    map[string]string // finding id -> state@rv
	}{
		{"last state of each finding of the cluster", cfg.Findings.Index, "c", map[string]string{
			"c/posture-host-pid/a": "resolved@14", "c/posture-host-pid/b": "open@11", "c/posture-host-pid/x": "reopened@16"}},
		{"another cluster", cfg.Findings.Index, "other", map[string]string{"other/posture-host-pid/d": "open@13"}},
		{"cluster without findings", cfg.Findings.Index, "none", map[string]string{}},
		{"index not created yet", cfg.Findings.Index + "-missing", "c", map[string]string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, skipped, err := FindingStates(context.Background(), es, tc.index, tc.cluster)
			if err != nil || skipped != 0 {
				t.Fatalf("err %v, skipped %d", err, skipped)
			}
			if len(got) != len(tc.want) {
				t.Errorf("%d states, want %d: %+v", len(got), len(tc.want), got)
			}
			for _, d := range got {
				if s := string(d.State) + "@" + d.ResourceVersion; tc.want[d.ID] != s {
					t.Errorf("%s: %s, want %q", d.ID, s, tc.want[d.ID])
				}
				w := finding(tc.cluster, d.Object.UID, d.State, d.ResourceVersion).Decision
				if d.Cluster != w.Cluster || d.CheckID != w.CheckID || d.Severity != w.Severity || d.Object != w.Object ||
					d.Remediation != w.Remediation || ecs.TransitionID(&d) != ecs.TransitionID(&w) {
					t.Errorf("read back %+v, wrote %+v", d, w)
				}
				if want := map[bool]*posture.Actor{true: actorB}[d.ID == "c/posture-host-pid/b"]; !reflect.DeepEqual(d.Actor, want) {
					t.Errorf("%s: actor %+v, want %+v", d.ID, d.Actor, want)
				}
				if d.Open() && d.OpenedAt.IsZero() { // an open state document has opened_at: Restore takes it back
					t.Errorf("%s: opened_at not read back", d.ID)
				}
			}
		})
	}
}
