package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sub", "positions.yaml")
	for _, content := range []string{"first\n", "second, longer than the first\n"} {
		if err := WriteFile(file, []byte(content)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(file)
		if err != nil || string(got) != content {
			t.Fatalf("read back %q, %v; want %q", got, err, content)
		}
		// Rewriting replaces the file and leaves no temporary file behind.
		entries, _ := os.ReadDir(filepath.Dir(file))
		if len(entries) != 1 || entries[0].Name() != "positions.yaml" {
			t.Errorf("directory holds %v", entries)
		}
	}
	// A directory that cannot be written fails loudly.
	ro := filepath.Join(dir, "ro")
	os.Mkdir(ro, 0o500)
	if os.Geteuid() != 0 { // root ignores permissions
		if err := WriteFile(filepath.Join(ro, "p.yaml"), []byte("x")); err == nil {
			t.Error("write into a read-only directory succeeded")
		}
	}
}
