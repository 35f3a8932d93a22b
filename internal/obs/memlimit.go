package obs

import (
	"log/slog"
	"os"
	"runtime/debug"
)

// ApplyMemoryLimit sets the Go runtime's soft memory limit
// (debug.SetMemoryLimit) to limit bytes, unless the GOMEMLIMIT environment
// variable is set — an operator's explicit setting (e.g. 80% of the
// container's limit) always wins — or limit is 0 (no limit). It returns the
// limit in effect afterwards (math.MaxInt64 when none).
//
// Why a default limit at all: with Go's default GOGC the heap grows to
// twice the live heap before a collection, and a process that allocates
// fast (the collector turns ~10 KB of garbage per 1.5 KB audit event) gets
// there between every pair of collections, so its RSS sits near twice what
// it needs. A soft limit makes the collector collect earlier as it nears
// the limit instead. It is soft: when the live heap itself is larger (a
// burst of big webhook bodies), the runtime exceeds it rather than fail,
// and caps the GC at about half of the CPU.
func ApplyMemoryLimit(limit int64, log *slog.Logger) int64 {
	if env := os.Getenv("GOMEMLIMIT"); env != "" {
		cur := debug.SetMemoryLimit(-1) // -1 reads without changing
		log.Info("memory limit from GOMEMLIMIT; the configured one is not applied", "gomemlimit", env, "configured_bytes", limit)
		return cur
	}
	if limit <= 0 {
		return debug.SetMemoryLimit(-1)
	}
	debug.SetMemoryLimit(limit)
	log.Debug("soft memory limit set", "bytes", limit)
	return limit
}
