package obs

import (
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
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
		{"minus one: none", "", -1, math.MaxInt64},
		{"GOMEMLIMIT wins", "100MiB", 64 << 20, 100 << 20},
		{"GOMEMLIMIT wins over the cgroup", "100MiB", 0, 100 << 20},
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

// TestApplyBatchGC: a batch command runs at BatchGCPercent, and a GOGC
// the operator set is left as the runtime applied it.
func TestApplyBatchGC(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })
	for _, tt := range []struct {
		name string
		env  string // "-": unset
		want int
	}{
		{"GOGC unset", "-", BatchGCPercent},
		{"GOGC set", "150", 150},
		{"GOGC off", "off", -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			if tt.env == "-" {
				t.Setenv("GOGC", "")
				os.Unsetenv("GOGC")
			} else {
				t.Setenv("GOGC", tt.env)
				debug.SetGCPercent(tt.want) // the runtime reads GOGC at start; stand in for it
			}
			if got := ApplyBatchGC(); got != tt.want {
				t.Fatalf("ApplyBatchGC = %d, want %d", got, tt.want)
			}
			if got := debug.SetGCPercent(100); got != tt.want {
				t.Fatalf("GC percent in effect = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestCgroupMemoryLimit reads fake cgroup trees: v2 and v1, with and
// without a cgroup namespace, unlimited, and unreadable; the automatic soft
// limit is CgroupSharePercent of a real limit and DefaultMemoryLimit otherwise.
func TestCgroupMemoryLimit(t *testing.T) {
	const gib = 1 << 30
	share := func(n int64) int64 { return n / 100 * CgroupSharePercent }
	tests := []struct {
		name      string
		self      string            // /proc/self/cgroup
		files     map[string]string // under the cgroup root
		want      int64
		wantErr   bool
		wantLimit int64
	}{
		{"v2 in a cgroup namespace", "0::/\n", map[string]string{"memory.max": "536870912\n"}, 512 << 20, false, share(512 << 20)},
		{"v2 host view of the pod's cgroup", "0::/kubepods/pod1/c1\n",
			map[string]string{"kubepods/pod1/c1/memory.max": "1073741824", "memory.max": "max"}, gib, false, share(gib)},
		{"v2 private mount, host path in /proc", "0::/kubepods/pod1/c1\n", map[string]string{"memory.max": "1073741824"}, gib, false, share(gib)},
		{"v2 unlimited", "0::/\n", map[string]string{"memory.max": "max\n"}, 0, false, DefaultMemoryLimit},
		{"v1 memory controller", "4:memory:/docker/abc\n3:cpu:/docker/abc\n0::/\n",
			map[string]string{"memory/docker/abc/memory.limit_in_bytes": "268435456\n"}, 256 << 20, false, share(256 << 20)},
		{"v1 with cpuacct,memory listed together", "4:cpuacct,memory:/\n", map[string]string{"memory/memory.limit_in_bytes": "268435456"}, 256 << 20, false, share(256 << 20)},
		{"v1 unlimited", "4:memory:/\n", map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712"}, 0, false, DefaultMemoryLimit},
		{"no cgroup files", "0::/\n", nil, 0, true, DefaultMemoryLimit},
		{"garbage in memory.max", "0::/\n", map[string]string{"memory.max": "lots"}, 0, true, DefaultMemoryLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			self := filepath.Join(dir, "self-cgroup")
			root := filepath.Join(dir, "cgroup")
			write := func(path, content string) {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			write(self, tt.self)
			os.MkdirAll(root, 0o755)
			for f, c := range tt.files {
				write(filepath.Join(root, f), c)
			}
			got, err := CgroupMemoryLimit(self, root)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("CgroupMemoryLimit = %d, %v; want %d (error %v)", got, err, tt.want, tt.wantErr)
			}
			limit, _ := autoMemoryLimit(self, root, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if limit != tt.wantLimit {
				t.Errorf("automatic limit %d, want %d", limit, tt.wantLimit)
			}
		})
	}
}
