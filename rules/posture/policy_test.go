package posture

import (
	"slices"
	"testing"
)

// TestPolicyControlsTracked: the 5.2.1 finding on kube-system follows the
// set of policy controls as they change anywhere in the cluster, through
// the "policy" dependency key, and a namespace change that does not touch
// the set re-judges nothing.
func TestPolicyControlsTracked(t *testing.T) {
	const check = "posture-no-policy-control"
	e := New(builtin(t))
	apply(t, e, obj(t, kubeSystem))
	open := obj(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: apps}")
	apply(t, e, open)
	steps := []struct {
		name string
		do   func() []Decision
		want []string // transitions of the check on kube-system
	}{
		{"a validating webhook installed", func() []Decision { return apply(t, e, obj(t, validatingWebhook)) }, []string{check + ":resolved"}},
		{"the webhook removed", func() []Decision {
			return e.Delete(cl, "ValidatingWebhookConfiguration", "", "policy-engine")
		}, []string{check + ":reopened"}},
		{"a namespace labelled to enforce baseline", func() []Decision {
			return apply(t, e, with(t, open, "metadata.labels", map[string]any{"pod-security.kubernetes.io/enforce": "baseline"}))
		}, []string{check + ":resolved"}},
		{"the label dropped to privileged", func() []Decision {
			return apply(t, e, with(t, with(t, open, "metadata.labels", map[string]any{"pod-security.kubernetes.io/enforce": "baseline"}),
				"metadata.labels", map[string]any{"pod-security.kubernetes.io/enforce": "privileged"}))
		}, []string{check + ":reopened"}},
	}
	// Before any control: open.
	if !has(e.Findings(cl), check, kubeSystemUID) {
		t.Fatalf("no control: findings %v, want %s on kube-system", ids(e.Findings(cl), ""), check)
	}
	for _, s := range steps {
		var got []string
		for _, d := range s.do() {
			if d.CheckID == check && d.Object.UID == kubeSystemUID {
				got = append(got, d.CheckID+":"+string(d.State))
			}
		}
		if !slices.Equal(got, s.want) {
			t.Errorf("%s: %v, want %v", s.name, got, s.want)
		}
	}
	before := e.stats.Evaluations.Load()
	apply(t, e, with(t, obj(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}"), "metadata.labels", map[string]any{"team": "a"}))
	// The new namespace's own checks run; kube-system's pair is not re-judged.
	nsChecks := len(New(builtin(t)).cks.byKind["Namespace"])
	if n := e.stats.Evaluations.Load() - before; n != uint64(nsChecks) {
		t.Errorf("a namespace outside the controls cost %d evaluations, want its own %d", n, nsChecks)
	}
}
