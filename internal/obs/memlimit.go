package obs

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
)

// DefaultMemoryLimit is the soft memory limit applied when none is
// configured and the process is in no memory-limited cgroup: it keeps the
// collector's RSS (which adds ~35 MiB of mapped binary) under 100 MiB while
// it tails at 50,000+ records/s.
const DefaultMemoryLimit = 60 << 20

// CgroupSharePercent is the part of the container's memory limit the Go
// heap may use by default: the rest is for what the Go runtime does not count (the
// mapped binary, thread stacks, fragmentation) and for the overshoot a
// soft limit allows.
const CgroupSharePercent = 85

// ApplyMemoryLimit sets the Go runtime's soft memory limit
// (debug.SetMemoryLimit) and returns the limit in effect afterwards
// (math.MaxInt64 when none). In order of precedence:
//
//   - the GOMEMLIMIT environment variable, when set: an operator's explicit
//     setting always wins, and the runtime has already applied it;
//   - limit > 0, the configured limit in bytes; limit < 0: no limit;
//   - limit == 0: CgroupSharePercent of the memory limit of the process's cgroup
//     (v2 memory.max, v1 memory.limit_in_bytes), so a pod's limit is
//     respected without configuring it twice; DefaultMemoryLimit when the
//     cgroup sets none or cannot be read.
//
// Why a limit at all: with Go's default GOGC the heap grows to twice the
// live heap before a collection, and a process that allocates fast (the
// collector turns ~10 KB of garbage per 1.5 KB audit event) gets there
// between every pair of collections, so its RSS sits near twice what it
// needs. A soft limit makes the collector collect earlier as it nears the
// limit instead. It is soft: when the live heap itself is larger (a burst
// of big webhook bodies), the runtime exceeds it rather than fail, and
// caps the GC at about half of the CPU.
func ApplyMemoryLimit(limit int64, log *slog.Logger) int64 {
	if env := os.Getenv("GOMEMLIMIT"); env != "" {
		cur := debug.SetMemoryLimit(-1) // -1 reads without changing
		log.Info("memory limit from GOMEMLIMIT; the configured one is not applied", "gomemlimit", env, "configured_bytes", limit)
		return cur
	}
	from := "configured"
	switch {
	case limit < 0:
		return debug.SetMemoryLimit(-1)
	case limit == 0:
		limit, from = autoMemoryLimit("/proc/self/cgroup", "/sys/fs/cgroup", log)
	}
	debug.SetMemoryLimit(limit)
	log.Info("soft memory limit set", "bytes", limit, "from", from)
	return limit
}

// BatchGCPercent is the GOGC of batch commands (ApplyBatchGC).
const BatchGCPercent = 400

// ApplyBatchGC sets the GC percent (GOGC) of a batch command, one that
// reads a file through and exits (`kubesift rules eval`), to
// BatchGCPercent, unless the GOGC environment variable is set (the runtime
// has applied it, and an operator's setting wins); it returns the percent
// in effect. Why: such a command's live heap is small and nearly all of it
// is the program's own (compiled rules, type tables) — some 7 MiB, which
// every collection marks again. At the default of 100 a collection comes
// every 7 MiB allocated, every ~1,000 audit records, and the collector took
// some 40% of the command's CPU; at 400 the heap goal is some 35 MiB and
// the collector's share a quarter of that. The Go compiler raises its own
// GC target for the same reason.
func ApplyBatchGC() int {
	if _, set := os.LookupEnv("GOGC"); set {
		p := debug.SetGCPercent(100) // read, then put back
		debug.SetGCPercent(p)
		return p
	}
	debug.SetGCPercent(BatchGCPercent)
	return BatchGCPercent
}

// autoMemoryLimit is CgroupSharePercent of the cgroup's limit, or DefaultMemoryLimit.
func autoMemoryLimit(procCgroup, root string, log *slog.Logger) (int64, string) {
	cg, err := CgroupMemoryLimit(procCgroup, root)
	switch {
	case err != nil:
		log.Debug("cgroup memory limit not readable; using the default soft memory limit", "err", err)
	case cg > 0:
		return cg / 100 * CgroupSharePercent, "cgroup"
	}
	return DefaultMemoryLimit, "default"
}

// unlimited is the least value cgroup v1 reports for "no limit" (it reports
// the largest page-aligned int64).
const unlimited = 1 << 62

// CgroupMemoryLimit returns the memory limit in bytes of the cgroup the
// process is in, 0 when it sets none. procCgroup is /proc/self/cgroup and
// root the cgroup file system's mount point (parameters so tests can fake
// both). The process's own cgroup directory is looked at first, then the
// root: inside a container with its own cgroup namespace the two are the
// same, and with a private cgroup mount but the host's view in
// /proc/self/cgroup only the root holds the container's files.
func CgroupMemoryLimit(procCgroup, root string) (int64, error) {
	v2, v1, err := cgroupPaths(procCgroup)
	if err != nil {
		return 0, err
	}
	var candidates []string
	if v2 != "" {
		candidates = append(candidates, filepath.Join(root, v2, "memory.max"), filepath.Join(root, "memory.max"))
	}
	if v1 != "" {
		candidates = append(candidates, filepath.Join(root, "memory", v1, "memory.limit_in_bytes"),
			filepath.Join(root, "memory", "memory.limit_in_bytes"))
	}
	for _, f := range candidates {
		b, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return 0, err
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s: %q is not a memory limit", f, s)
		}
		if n >= unlimited {
			return 0, nil
		}
		return n, nil
	}
	return 0, fmt.Errorf("no cgroup memory limit file under %s", root)
}

// cgroupPaths reads /proc/self/cgroup: the unified (v2) path from the
// "0::" line and the v1 memory controller's path.
func cgroupPaths(procCgroup string) (v2, v1 string, err error) {
	b, err := os.ReadFile(procCgroup)
	if err != nil {
		return "", "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		id, rest, _ := strings.Cut(sc.Text(), ":")
		controllers, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		switch {
		case id == "0" && controllers == "":
			v2 = path
		case slices.Contains(strings.Split(controllers, ","), "memory"):
			v1 = path
		}
	}
	return v2, v1, sc.Err()
}
