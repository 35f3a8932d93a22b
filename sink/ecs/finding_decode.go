package ecs

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
)

// stateFields is the part of a state document (FindingState) a Decision is
// made of: the finding fields FindingState writes, read back through the
// same struct so the two cannot name a field differently.
type stateFields struct {
	Orchestrator struct {
		Cluster struct {
			Name string `json:"name"`
		} `json:"cluster"`
	} `json:"orchestrator"`
	Kubesift struct {
		Finding findingFields `json:"finding"`
	} `json:"kubesift"`
}

// DecodeFindingState reads a state document back into the Decision it was
// built from, and its version: what a store gives posture.Engine.Restore
// (sink/elasticsearch's FindingStates, the NDJSON files of `kubesift run`),
// the opening times and the actor included. It refuses, with
// a FieldError naming the field, what FindingState would not have written:
// a missing id, check, cluster or object uid, a state other than open,
// resolved or reopened, an unknown severity, a resourceVersion that is not
// a positive decimal revision.
func DecodeFindingState(body []byte) (posture.Decision, int64, error) {
	var s stateFields
	if err := json.Unmarshal(body, &s); err != nil {
		return posture.Decision{}, 0, &FieldError{Field: "finding", Msg: "not a finding state document: " + err.Error()}
	}
	f := &s.Kubesift.Finding
	sev, err := rules.ParseSeverity(f.Severity)
	if err != nil {
		return posture.Decision{}, 0, &FieldError{ID: f.ID, Field: "severity", Msg: fmt.Sprintf("%q is not a severity", clipField(f.Severity))}
	}
	d := posture.Decision{ID: f.ID, Cluster: s.Orchestrator.Cluster.Name, State: posture.State(f.State), CheckID: f.CheckID,
		Title: f.Title, CIS: f.CIS, CISVersion: f.CISVersion, Severity: sev, Object: f.Object,
		Message: f.Message, Remediation: f.Remediation, ResourceVersion: f.ResourceVersion,
		FirstSeen: timeOf(f.FirstSeen), OpenedAt: timeOf(f.OpenedAt), Actor: f.Actor}
	if f.Mitre != nil {
		d.Mitre = rules.Mitre{Tactics: f.Mitre.Tactics, Techniques: f.Mitre.Techniques}
	}
	// The checks FindingState makes before writing: what passes them is a
	// state this package could have written.
	_, v, err := checkDocs.finding(&Finding{Decision: d}, "state", nil)
	if err != nil {
		return posture.Decision{}, 0, err
	}
	if f.Version != 0 && f.Version != v {
		return posture.Decision{}, 0, &FieldError{ID: f.ID, Field: "version",
			Msg: fmt.Sprintf("%d is not the version of state %s at revision %s", f.Version, f.State, clipField(f.ResourceVersion))}
	}
	return d, v, nil
}

// checkDocs runs FindingDocs.finding's checks for DecodeFindingState; its
// clock is never read for anything kept.
var checkDocs = &FindingDocs{Now: func() time.Time { return time.Time{} }}

// timeOf is timePtr's inverse: nil is the zero time.
func timeOf(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
