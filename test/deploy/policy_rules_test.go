package deploy

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit"
	auditpolicy "k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/kubesift/kubesift/rules"
)

// What the built-in rule pack loses, or gains in noise, when kube-apiserver
// records what deployments/audit/policy.yaml says instead of everything at
// RequestResponse. policy.yaml's header must name each of these rules.
var (
	// Rules whose alerting fixtures no longer alert.
	policyLoses = map[string]string{
		"configmap-with-credentials": "ConfigMaps are recorded at Metadata: no request.data to inspect",
	}
	// Rules whose must-not-alert fixtures alert.
	policyNoisier = map[string]string{
		"secret-created": "Secrets are recorded at Metadata: service-account token Secrets (request.type) cannot be told apart",
	}
)

// TestAuditPolicyKeepsRuleSignal replays every fixture of the built-in rule
// pack (rules/builtin/tests) as kube-apiserver would record it under the
// recommended policy — each audit record's level from the server's own
// evaluator: None drops it, Metadata strips request and response bodies,
// Request the response, RequestReceived stages are omitted — and runs the
// fixtures again. Exactly the rules listed above may change their verdict.
func TestAuditPolicyKeepsRuleSignal(t *testing.T) {
	pol, err := auditpolicy.LoadPolicyFromBytes(mustRead(t, "deployments", "audit", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ev := auditpolicy.NewPolicyRuleEvaluator(pol)
	cases, err := rules.LoadTests(rules.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var changed []rules.TestCase
	for _, tc := range cases {
		var recs []map[string]any
		diff := false
		for _, r := range tc.Records {
			out, keep, altered := underPolicy(t, ev, pol, r)
			diff = diff || altered || !keep
			if keep {
				recs = append(recs, out)
			}
		}
		if !diff {
			continue
		}
		tc.Records = recs
		if tc.Alerts != nil {
			// The exact count may change with dropped records; what matters
			// is whether the rule still alerts at all.
			tc.Match, tc.Alerts = *tc.Alerts > 0, nil
		}
		changed = append(changed, tc)
	}
	// One engine for all (RunTests resets the stateful windows per case).
	res, err := rules.RunTests(rules.LoadOptions{}, changed)
	if err != nil {
		t.Fatal(err)
	}
	lost, noisier := map[string][]string{}, map[string][]string{}
	for i, r := range res {
		if r.Passed {
			continue
		}
		if changed[i].Match {
			lost[r.Rule] = append(lost[r.Rule], r.Name+": "+r.Detail)
		} else {
			noisier[r.Rule] = append(noisier[r.Rule], r.Name+": "+r.Detail)
		}
	}
	t.Logf("%d of %d fixtures change under the policy", len(changed), len(cases))
	header := string(mustRead(t, "deployments", "audit", "policy.yaml"))
	for _, c := range []struct {
		what string
		got  map[string][]string
		want map[string]string
	}{{"loses its alerts", lost, policyLoses}, {"alerts on a near miss", noisier, policyNoisier}} {
		for rule, fx := range c.got {
			if _, ok := c.want[rule]; !ok {
				t.Errorf("under policy.yaml, rule %s %s (fixtures: %s); record it in the policy (or its header and this test)",
					rule, c.what, strings.Join(fx, "; "))
			} else {
				t.Logf("as documented, %s %s: %s", rule, c.what, strings.Join(fx, "; "))
			}
		}
		for rule, why := range c.want {
			if _, ok := c.got[rule]; !ok {
				t.Errorf("rule %s no longer %s under policy.yaml (%s): update this test and the policy's header", rule, c.what, why)
			}
			if !strings.Contains(header, rule) {
				t.Errorf("policy.yaml's header does not name %s, which %s under it", rule, c.what)
			}
		}
	}
}

// groupOf gives the API group of resources that fixtures name without one
// (the rules match on resource names; a real audit record always carries
// objectRef.apiGroup). Events stay as given: both groups have them.
var groupOf = map[string]string{
	"roles": "rbac.authorization.k8s.io", "clusterroles": "rbac.authorization.k8s.io",
	"rolebindings": "rbac.authorization.k8s.io", "clusterrolebindings": "rbac.authorization.k8s.io",
	"deployments": "apps", "daemonsets": "apps", "statefulsets": "apps", "replicasets": "apps",
	"jobs": "batch", "cronjobs": "batch",
	"mutatingwebhookconfigurations": "admissionregistration.k8s.io", "validatingwebhookconfigurations": "admissionregistration.k8s.io",
	"mutatingadmissionpolicies": "admissionregistration.k8s.io", "mutatingadmissionpolicybindings": "admissionregistration.k8s.io",
	"validatingadmissionpolicies": "admissionregistration.k8s.io", "validatingadmissionpolicybindings": "admissionregistration.k8s.io",
	"certificatesigningrequests": "certificates.k8s.io", "tokenreviews": "authentication.k8s.io",
	"selfsubjectrulesreviews": "authorization.k8s.io", "selfsubjectaccessreviews": "authorization.k8s.io",
	"subjectaccessreviews": "authorization.k8s.io", "localsubjectaccessreviews": "authorization.k8s.io",
	"leases": "coordination.k8s.io", "endpointslices": "discovery.k8s.io",
	"networkpolicies": "networking.k8s.io", "ingresses": "networking.k8s.io",
}

// underPolicy returns a fixture record as the policy would record it,
// whether it is recorded at all, and whether anything changed. Kubernetes
// Events pass unchanged.
func underPolicy(t testing.TB, ev audit.PolicyRuleEvaluator, pol *auditinternal.Policy, r map[string]any) (map[string]any, bool, bool) {
	t.Helper()
	if _, ok := r["involvedObject"]; ok {
		return r, true, false
	}
	if _, ok := r["regarding"]; ok {
		return r, true, false
	}
	var a struct {
		Stage      string `json:"stage"`
		Verb       string `json:"verb"`
		RequestURI string `json:"requestURI"`
		User       struct {
			Username string   `json:"username"`
			Groups   []string `json:"groups"`
		} `json:"user"`
		ObjectRef *struct {
			APIGroup    string `json:"apiGroup"`
			Resource    string `json:"resource"`
			Subresource string `json:"subresource"`
			Namespace   string `json:"namespace"`
			Name        string `json:"name"`
		} `json:"objectRef"`
	}
	b, _ := json.Marshal(r)
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(pol.OmitStages, auditinternal.Stage(a.Stage)) {
		return nil, false, true
	}
	attrs := authorizer.AttributesRecord{User: &user.DefaultInfo{Name: a.User.Username, Groups: a.User.Groups}, Verb: a.Verb}
	if o := a.ObjectRef; o != nil {
		group := o.APIGroup
		if rest, ok := strings.CutPrefix(a.RequestURI, "/apis/"); ok && group == "" {
			group, _, _ = strings.Cut(rest, "/")
		} else if group == "" && !strings.HasPrefix(a.RequestURI, "/api/") {
			group = groupOf[o.Resource]
		}
		attrs.ResourceRequest, attrs.APIGroup, attrs.Resource, attrs.Subresource = true, group, o.Resource, o.Subresource
		attrs.Namespace, attrs.Name = o.Namespace, o.Name
	} else {
		attrs.Path, _, _ = strings.Cut(a.RequestURI, "?")
	}
	out := make(map[string]any, len(r))
	for k, v := range r {
		out[k] = v
	}
	_, hasReq := r["requestObject"]
	_, hasResp := r["responseObject"]
	switch lvl := ev.EvaluatePolicyRule(attrs).Level; lvl {
	case auditinternal.LevelNone:
		return nil, false, true
	case auditinternal.LevelMetadata:
		delete(out, "requestObject")
		delete(out, "responseObject")
		out["level"] = string(lvl)
		return out, true, hasReq || hasResp
	case auditinternal.LevelRequest:
		delete(out, "responseObject")
		out["level"] = string(lvl)
		return out, true, hasResp
	}
	return out, true, false
}
