package collector

import (
	"os"
	"testing"
)

// TestOwnNamespace: outside a pod, with nothing configured, the Leases go
// to DefaultNamespace instead of stopping the collector, and the caller
// learns where the namespace came from.
func TestOwnNamespace(t *testing.T) {
	if _, err := os.Stat(serviceAccountNamespaceFile); err == nil {
		t.Skip("running in a pod: its service account namespace would be the answer")
	}
	tests := []struct {
		name, configured, podNamespace string
		want, from                     string
	}{
		{"configured", "security", "kubesift", "security", "configured"},
		{"POD_NAMESPACE", "", "kubesift", "kubesift", "POD_NAMESPACE"},
		{"outside a pod", "", "", DefaultNamespace, "default: not configured and not running in a pod"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("POD_NAMESPACE", tc.podNamespace)
			ns, from := OwnNamespace(tc.configured)
			if ns != tc.want || from != tc.from {
				t.Errorf("OwnNamespace(%q) = %q, %q; want %q, %q", tc.configured, ns, from, tc.want, tc.from)
			}
		})
	}
}
