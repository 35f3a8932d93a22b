package rules

import "slices"

// Pure helpers of posture checks (they read one object, not the inventory).

// serviceAccountName is the service account a workload's pods run as: an
// empty serviceAccountName means the namespace's "default".
func serviceAccountName(obj map[string]any) string {
	if n, _ := podSpec(obj)["serviceAccountName"].(string); n != "" {
		return n
	}
	return "default"
}

// grants reports whether any of the policy rules allows one of verbs on one
// of resources, a "*" in the rule matching anything. API groups are not
// compared: the resources checks ask about (secrets, pods, roles) are
// judged in whichever group grants a resource of that name, which can only
// over-report a custom resource that shares the name.
func grants(rules []any, verbs, resources []string) bool {
	for _, r := range rules {
		m := asMap(r)
		if anyOf(asSlice(m["verbs"]), verbs) && anyOf(asSlice(m["resources"]), resources) {
			return true
		}
	}
	return false
}

// anyOf: have holds "*" or one of want.
func anyOf(have []any, want []string) bool {
	for _, h := range have {
		if s, ok := h.(string); ok && (s == "*" || slices.Contains(want, s)) {
			return true
		}
	}
	return false
}

// defaultDeny reports whether a NetworkPolicy selects every pod of its
// namespace and allows no traffic of policyType (Ingress or Egress): an
// empty podSelector, the type listed in policyTypes (Ingress is implied
// when policyTypes is absent), and no rule of that type. An "egress: [{}]"
// rule allows everything, so only an absent or empty list denies.
func defaultDeny(np map[string]any, policyType string) bool {
	spec := asMap(np["spec"])
	if spec == nil {
		return false
	}
	sel := asMap(spec["podSelector"])
	if len(asMap(sel["matchLabels"])) > 0 || len(asSlice(sel["matchExpressions"])) > 0 {
		return false
	}
	types := asSlice(spec["policyTypes"])
	listed := slices.Contains(types, any(policyType)) || (len(types) == 0 && policyType == "Ingress")
	field := "ingress"
	if policyType == "Egress" {
		field = "egress"
	}
	return listed && len(asSlice(spec[field])) == 0
}

// strs reads a list argument: a literal list arrives as []any.
func strs(v any) []string {
	switch x := v.(type) {
	case []string:
		return x
	case string:
		return []string{x}
	}
	var out []string
	for _, e := range asSlice(v) {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
