package rbacusage

import (
	"slices"
	"sort"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Suggest is the narrowest role that still allows every request of used
// through binding b: one rule per API group and verb set, listing exactly
// the resources (subresources as "pods/log") used with those verbs, and the
// non-resource URLs in a rule of their own. It grants no verb on a resource
// that used does not name, so applying it in place of the role keeps what
// the window used and drops the rest. resourceNames are not narrowed: the
// usage state does not keep object names.
//
// A ClusterRoleBinding gets a ClusterRole; a RoleBinding gets a Role in its
// namespace (a RoleBinding of a ClusterRole only ever granted there), and
// non-resource URLs are left out of a Role, which cannot hold them (a
// RoleBinding never grants them either). The name is the old role's with
// "-used" appended. nil when used is empty.
func Suggest(b Ref, role Ref, used []Pair) *SuggestedRole {
	if len(used) == 0 {
		return nil
	}
	s := &SuggestedRole{Kind: "ClusterRole", Name: role.Name + "-used"}
	if b.Kind == "RoleBinding" {
		s.Kind, s.Namespace = "Role", b.Namespace
	}
	verbsOf := map[[2]string][]string{} // (group, resource) -> verbs
	var urls []string
	urlVerbs := map[string]bool{}
	for _, p := range used {
		if p.NonResourceURL != "" {
			if s.Kind == "ClusterRole" {
				urls = appendNew(urls, p.NonResourceURL)
				urlVerbs[p.Verb] = true
			}
			continue
		}
		res := p.Resource
		if p.Subresource != "" {
			res += "/" + p.Subresource
		}
		k := [2]string{p.APIGroup, res}
		verbsOf[k] = appendNew(verbsOf[k], p.Verb)
	}
	// Resources of one group used with the same verbs share a rule.
	type ruleKey struct{ group, verbs string }
	byRule := map[ruleKey][]string{}
	for k, verbs := range verbsOf {
		slices.Sort(verbs)
		rk := ruleKey{k[0], strings.Join(verbs, ",")}
		byRule[rk] = append(byRule[rk], k[1])
	}
	for rk, res := range byRule {
		slices.Sort(res)
		s.Rules = append(s.Rules, rbacv1.PolicyRule{APIGroups: []string{rk.group}, Resources: res, Verbs: strings.Split(rk.verbs, ",")})
	}
	sort.Slice(s.Rules, func(i, j int) bool {
		a, b := s.Rules[i], s.Rules[j]
		if a.APIGroups[0] != b.APIGroups[0] {
			return a.APIGroups[0] < b.APIGroups[0]
		}
		return a.Resources[0] < b.Resources[0]
	})
	if len(urls) > 0 {
		slices.Sort(urls)
		verbs := make([]string, 0, len(urlVerbs))
		for v := range urlVerbs {
			verbs = append(verbs, v)
		}
		slices.Sort(verbs)
		s.Rules = append(s.Rules, rbacv1.PolicyRule{NonResourceURLs: urls, Verbs: verbs})
	}
	if len(s.Rules) == 0 {
		return nil
	}
	return s
}

func appendNew(xs []string, x string) []string {
	if slices.Contains(xs, x) {
		return xs
	}
	return append(xs, x)
}

// SuggestedRole is a narrower Role or ClusterRole.
type SuggestedRole struct {
	Kind      string              `json:"kind"`
	Namespace string              `json:"namespace,omitempty"`
	Name      string              `json:"name"`
	Rules     []rbacv1.PolicyRule `json:"rules"`
}

// Object is the role as an object kubectl applies.
func (s *SuggestedRole) Object() any {
	meta := metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace}
	tm := metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: s.Kind}
	if s.Kind == "Role" {
		return &rbacv1.Role{TypeMeta: tm, ObjectMeta: meta, Rules: s.Rules}
	}
	return &rbacv1.ClusterRole{TypeMeta: tm, ObjectMeta: meta, Rules: s.Rules}
}

// Unused lists the grants of rules (a role's policy rules as generic JSON)
// that are broad and were not used: a "*" in verbs, resources or apiGroups,
// or any verb on secrets when no used pair touched secrets. These are what
// the posture check "grant broader than use" reports; a role granting
// exactly what was used, or more of the ordinary kind (list as well as
// get), is not reported, since every role would be.
func Unused(rules []any, used []Pair) []string {
	usedSecrets := slices.ContainsFunc(used, func(p Pair) bool { return p.Resource == "secrets" })
	var out []string
	for _, r := range rules {
		m, _ := r.(map[string]any)
		verbs, res, groups := strList(m["verbs"]), strList(m["resources"]), strList(m["apiGroups"])
		for _, f := range []struct {
			name string
			vals []string
		}{{"verbs", verbs}, {"resources", res}, {"apiGroups", groups}} {
			if slices.Contains(f.vals, "*") {
				out = appendNew(out, `"*" in `+f.name)
			}
		}
		if !usedSecrets && slices.Contains(res, "secrets") && slices.Contains(groups, "") {
			out = appendNew(out, strings.Join(verbs, ",")+" secrets")
		}
	}
	return out
}

func strList(v any) []string {
	var out []string
	switch x := v.(type) {
	case []string:
		return x
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}
