package main

import (
	"debug/buildinfo"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/kubesift/kubesift/internal/testenv"
)

// TestBuildVersion: what -ldflags sets wins; what it leaves empty comes from
// the toolchain's build information (module version, vcs.revision with
// -dirty, vcs.time); what neither has is "unknown", never "devel" alone.
func TestBuildVersion(t *testing.T) {
	vcs := func(rev, modified, at string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: "go1.99.0", Main: debug.Module{Version: "(devel)"}}
		for _, s := range [][2]string{{"vcs.revision", rev}, {"vcs.modified", modified}, {"vcs.time", at}} {
			if s[1] != "" {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: s[0], Value: s[1]})
			}
		}
		return bi
	}
	tests := []struct {
		name string
		ld   versionInfo
		bi   *debug.BuildInfo
		want versionInfo
	}{
		{"make build", versionInfo{Version: "v1.2.3", Commit: "abc123", Date: "2026-12-07T01:00:00Z"}, vcs("fff", "true", "2026-01-01T00:00:00Z"),
			versionInfo{Version: "v1.2.3", Commit: "abc123", Date: "2026-12-07T01:00:00Z", GoVersion: "go1.99.0"}},
		{"go build in a clean checkout", versionInfo{}, vcs("0123abcd", "false", "2026-12-06T10:00:00Z"),
			versionInfo{Version: "devel", Commit: "0123abcd", Date: "2026-12-06T10:00:00Z", GoVersion: "go1.99.0"}},
		{"go build with changes", versionInfo{}, vcs("0123abcd", "true", "2026-12-06T10:00:00Z"),
			versionInfo{Version: "devel", Commit: "0123abcd-dirty", Date: "2026-12-06T10:00:00Z", GoVersion: "go1.99.0"}},
		{"go install of a tagged module", versionInfo{}, &debug.BuildInfo{GoVersion: "go1.99.0", Main: debug.Module{Version: "v1.4.0"}},
			versionInfo{Version: "v1.4.0", Commit: "unknown", Date: "unknown", GoVersion: "go1.99.0"}},
		{"go run: no VCS stamp", versionInfo{}, vcs("", "", ""),
			versionInfo{Version: "devel", Commit: "unknown", Date: "unknown", GoVersion: "go1.99.0"}},
		{"no build information", versionInfo{Version: "v2.0.0"}, nil,
			versionInfo{Version: "v2.0.0", Commit: "unknown", Date: "unknown"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := buildVersion(tc.ld, tc.bi)
			if tc.want.GoVersion == "" {
				tc.want.GoVersion = got.GoVersion // runtime.Version()
			}
			tc.want.Platform = got.Platform
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if got.Platform == "" || !strings.Contains(got.Platform, "/") {
				t.Errorf("platform %q", got.Platform)
			}
		})
	}
}

// TestVersionCommand: `version`, `version -o json` and `--version` all say
// the version, the commit and the build date.
func TestVersionCommand(t *testing.T) {
	version, commit, date = "v9.9.9", "c0ffee", "2026-12-07T00:00:00Z"
	t.Cleanup(func() { version, commit, date = "", "", "" })
	want := "kubesift v9.9.9 (commit c0ffee, built 2026-12-07T00:00:00Z, "
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, errs, code := runCLI(t, "", args...)
		if code != 0 || !strings.HasPrefix(out, want) {
			t.Errorf("%v: exit %d, stdout %q (stderr %q); want it to start with %q", args, code, out, errs, want)
		}
	}
	out, errs, code := runCLI(t, "", "version", "-o", "json")
	var v versionInfo
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil {
		t.Fatalf("version -o json: exit %d, %v: %q %q", code, err, out, errs)
	}
	if v.Version != "v9.9.9" || v.Commit != "c0ffee" || v.Date != "2026-12-07T00:00:00Z" || v.GoVersion == "" || v.Platform == "" {
		t.Errorf("version -o json = %+v", v)
	}
}

// TestVersionOfPlainGoBuild: a binary from plain `go build` in a git
// checkout (no -ldflags) reports the commit and time the toolchain embedded
// in it. -buildvcs=true is explicit, as GOFLAGS may turn the stamp off; the
// go command stamps nothing in a git worktree (its .git is a file), where
// the test skips: TestBuildVersion covers the logic there.
func TestVersionOfPlainGoBuild(t *testing.T) {
	testenv.Short(t) // builds a binary
	if st, err := os.Stat(filepath.Join(testenv.Root(), ".git")); err != nil || !st.IsDir() {
		t.Skip("not a git checkout with a .git directory: go build records no VCS stamp")
	}
	bin := filepath.Join(t.TempDir(), "kubesift")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/kubesift")
	build.Dir = testenv.Root()
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	want := buildVersion(versionInfo{}, bi)
	if want.Commit == "unknown" {
		t.Skip("the binary carries no vcs.revision")
	}
	out, err := exec.Command(bin, "version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("kubesift version -o json: %v", err)
	}
	var v versionInfo
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if v != want || v.Date == "unknown" {
		t.Errorf("version -o json = %+v, want %+v", v, want)
	}
}
