package obs

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
)

func TestApplyMemoryLimit(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	tests := []struct {
		name  string
		env   string
		limit int64
		want  int64
	}{
		{"configured", "", 64 << 20, 64 << 20},
		{"zero: none", "", 0, math.MaxInt64},
		{"GOMEMLIMIT wins", "100MiB", 64 << 20, 100 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetMemoryLimit(math.MaxInt64)
			t.Setenv("GOMEMLIMIT", tt.env)
			if tt.env != "" {
				// The runtime reads GOMEMLIMIT at start; stand in for it.
				debug.SetMemoryLimit(100 << 20)
			}
			if got := ApplyMemoryLimit(tt.limit, log); got != tt.want {
				t.Fatalf("ApplyMemoryLimit = %d, want %d", got, tt.want)
			}
			if got := debug.SetMemoryLimit(-1); got != tt.want {
				t.Fatalf("limit in effect = %d, want %d", got, tt.want)
			}
		})
	}
}
