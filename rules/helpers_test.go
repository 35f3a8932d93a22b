package rules

import (
	"slices"
	"testing"
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
