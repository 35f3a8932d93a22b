package rules

import (
	"slices"
	"testing"

	"github.com/expr-lang/expr"
)

func TestRBACFieldEachValueOnce(t *testing.T) {
	role := map[string]any{"rules": []any{
		map[string]any{"verbs": []any{"get", "list", "watch"}, "resources": []any{"pods"}},
		map[string]any{"verbs": []any{"get", "list", "watch", "delete"}, "resources": []any{"pods", "secrets"}},
		map[string]any{"verbs": []any{"*"}},
	}}
	for _, tc := range []struct {
		field string
		want  []string
	}{
		{"verbs", []string{"get", "list", "watch", "delete", "*"}},
		{"resources", []string{"pods", "secrets"}},
		{"apiGroups", nil},
	} {
		if got := rbacField(role, tc.field); !slices.Equal(got, tc.want) {
			t.Errorf("rbacField(%s) = %v, want %v", tc.field, got, tc.want)
		}
	}
}

// TestContainsFold checks contains_fold with a constant list (compiled once
// by matcherPatcher) and one computed at run time, on strings, lists and
// maps.
func TestContainsFold(t *testing.T) {
	env := map[string]any{
		"data":  map[string]any{"app.properties": "color=blue", "DB_PASSWORD": "x", "n": 1.0},
		"plain": map[string]any{"settings.json": "{}", "n": 1.0},
		"terms": []any{"PASS", "token"},
	}
	cases := []struct {
		code string
		want bool
	}{
		{`contains_fold("MyPassWord", ["pass"])`, true},
		{`contains_fold("MyPassWord", ["PASS"])`, true},
		{`contains_fold("password", ["secret", "token"])`, false},
		{`contains_fold("ÄPASS", ["äpass"])`, true},
		{`contains_fold(keys(data), ["password"])`, true},
		{`contains_fold(values(data), ["password"])`, false},
		{`contains_fold(keys(plain), ["pass", "token"])`, false},
		{`contains_fold(values(plain), ["1"])`, false}, // not a string
		{`contains_fold(data, ["password"])`, true},    // a key
		{`contains_fold(data, ["BLUE"])`, true},        // a value
		{`contains_fold(plain, ["pass", "1"])`, false}, // 1 is no string
		{`contains_fold(plain, ["settings"])`, true},
		{`glob(data, ["*"])`, false}, // maps are for contains_fold only
		{`contains_fold("a Token here", terms)`, true},
		{`contains_fold("nothing", terms)`, false},
		{`contains_fold("", [""])`, true},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			opts := append(helperOptions(), expr.Env(env))
			p, err := expr.Compile(tc.code, opts...)
			if err != nil {
				t.Fatal(err)
			}
			got, err := expr.Run(p, env)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("%s = %v, want %v", tc.code, got, tc.want)
			}
		})
	}
}
