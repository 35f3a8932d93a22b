package notify

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDigestFile: each digest is written as its cluster's page and
// figures for the day; a cluster name that is no plain directory name
// stays inside the directory; a second write replaces the files whole and
// leaves no temporary file.
func TestDigestFile(t *testing.T) {
	for _, tc := range []struct {
		name, cluster string
		plain         bool
	}{
		{"plain", "prod-eu-1", true},
		{"dotted", "prod.eu_1", true},
		{"parent", "../../etc", false},
		{"separator", "a/b", false},
		{"dot", ".", false},
		{"empty", "", false},
		{"long", strings.Repeat("c", 101), false},
		{"control", "prod\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := NewDigestFile(dir)
			cdir := f.Dir(tc.cluster)
			if filepath.Dir(cdir) != dir || (filepath.Base(cdir) == tc.cluster) != tc.plain {
				t.Fatalf("Dir(%q) = %s", tc.cluster, cdir)
			}
			for _, v := range []string{"first", "second"} {
				d := &Digest{Cluster: tc.cluster, Day: "2026-12-07", HTML: "<p>" + v + "</p>", Data: []byte(`{"v":"` + v + `"}`)}
				if retry, err := f.NotifyDigest(t.Context(), d); err != nil || retry {
					t.Fatalf("write %s: %v %v", v, retry, err)
				}
			}
			for name, want := range map[string]string{"2026-12-07.html": "<p>second</p>", "2026-12-07.json": `{"v":"second"}`} {
				if b, err := os.ReadFile(filepath.Join(cdir, name)); err != nil || string(b) != want {
					t.Errorf("%s: %q, %v", name, b, err)
				}
			}
			if entries, _ := os.ReadDir(cdir); len(entries) != 2 {
				t.Errorf("%d files in %s, want 2", len(entries), cdir)
			}
		})
	}
}

// TestDigestFileFails: a directory that cannot be written is an error
// naming the report file, retried.
func TestDigestFileFails(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	retry, err := NewDigestFile(blocker).NotifyDigest(t.Context(), &Digest{Cluster: "prod", Day: "2026-12-07"})
	if err == nil || !retry || !strings.Contains(err.Error(), "digest file") {
		t.Errorf("retry %v, err %v", retry, err)
	}
}
