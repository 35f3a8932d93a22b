package arch

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/kubesift/kubesift"

// room is a top-level directory of the module and the layer it sits on.
type room struct {
	name  string
	layer int
}

// rooms maps each top-level directory to its layer (see the package doc).
// record and internal share the "bottom" room, as they may import each
// other.
var rooms = map[string]room{
	"record":    {"bottom", 0},
	"internal":  {"bottom", 0},
	"rules":     {"rules", 1},
	"sink":      {"sink", 2},
	"collector": {"collector", 2},
	"pipeline":  {"pipeline", 3},
	"cmd":       {"cmd", 4},
	"hack":      {"hack", 4},
	"test":      {"test", 4},
}

// roomOf returns the room of a module package; ok is false for a package
// outside the module or in a directory rooms does not know.
func roomOf(pkg string) (r room, top string, ok bool) {
	rel, found := strings.CutPrefix(pkg, module+"/")
	if !found {
		return room{}, "", false
	}
	top, _, _ = strings.Cut(rel, "/")
	r, ok = rooms[top]
	return r, top, ok
}

// violation returns why from may not import to, or "" when it may.
func violation(from, to string) string {
	fr, _, okFrom := roomOf(from)
	tr, _, okTo := roomOf(to)
	switch {
	case !okFrom || !okTo:
		return ""
	case tr.layer > fr.layer:
		return fmt.Sprintf("imports %s uphill (layer %d > %d)", tr.name, tr.layer, fr.layer)
	case tr.layer == fr.layer && tr.name != fr.name:
		return fmt.Sprintf("imports its sibling %s (both layer %d)", tr.name, tr.layer)
	}
	return ""
}

func TestViolation(t *testing.T) {
	for _, tc := range []struct {
		from, to string
		bad      bool
	}{
		{"internal/config", "sink/notify/match", true},
		{"internal/config", "internal/match", false},
		{"internal/config", "record", false},
		{"record", "internal/testenv", false},
		{"rules", "record", false},
		{"rules", "sink", true},
		{"sink/notify", "pipeline", true},
		{"sink/notify", "sink", false},
		{"sink/notify", "rules", false},
		{"collector/replay", "sink", true},
		{"sink/ndjson", "collector", true},
		{"collector/replay", "collector/redact", false},
		{"pipeline", "sink/notify", false},
		{"pipeline", "collector", false},
		{"pipeline", "cmd/kubesift", true},
		{"cmd/kubesift", "pipeline", false},
		{"test/integration", "cmd/kubesift", true},
		{"sink", "github.com/segmentio/kafka-go", false},
	} {
		t.Run(tc.from+"->"+tc.to, func(t *testing.T) {
			from, to := module+"/"+tc.from, tc.to
			if !strings.Contains(to, ".") {
				to = module + "/" + to
			}
			if got := violation(from, to) != ""; got != tc.bad {
				t.Errorf("violation(%s, %s) = %v, want %v", tc.from, tc.to, got, tc.bad)
			}
		})
	}
}

// TestImportsRunDownhill lists every package of the module with its own and
// its tests' imports and fails once per import that runs up a layer or
// across to a sibling room, naming both packages.
func TestImportsRunDownhill(t *testing.T) {
	// No skip when go is missing: go test puts its own go first on the
	// PATH of the test process, so a missing one is a broken set-up.
	const format = `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}{{range .TestImports}} {{.}}{{end}}{{range .XTestImports}} {{.}}{{end}}`
	cmd := exec.Command("go", "list", "-e", "-f", format, module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, stderr.String())
	}
	pkgs := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		pkgs++
		from := fields[0]
		if _, top, ok := roomOf(from); !ok {
			t.Errorf("%s: top-level directory %q has no layer; add it to rooms and docs/architecture.md", from, top)
			continue
		}
		seen := map[string]bool{}
		for _, to := range fields[1:] {
			if seen[to] {
				continue
			}
			seen[to] = true
			if why := violation(from, to); why != "" {
				t.Errorf("%s imports %s: %s", from, to, why)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if pkgs < 10 {
		t.Fatalf("go list found %d packages; the test is not looking at the module", pkgs)
	}
}
