package audittail

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kubesift/kubesift/internal/atomicfile"
)

func TestParsePositions(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]Position
		wantErr string
	}{
		{"empty file", "", map[string]Position{}, ""},
		{"YAML", "positions:\n  /var/log/a.log: {inode: 12, offset: 345, line: 6}\n", map[string]Position{"/var/log/a.log": {Inode: 12, Offset: 345, Line: 6}}, ""},
		{"JSON", `{"positions":{"/a":{"inode":1,"offset":2}}}`, map[string]Position{"/a": {Inode: 1, Offset: 2}}, ""},
		{"unknown keys are ignored", "version: 9\npositions:\n  /a: {inode: 1, offset: 2, future: x}\n", map[string]Position{"/a": {Inode: 1, Offset: 2}}, ""},
		{"negative offset", "positions:\n  /a: {inode: 1, offset: -2}\n", nil, "negative offset"},
		{"line beyond offset", "positions:\n  /a: {inode: 1, offset: 2, line: 3}\n", nil, "beyond offset"},
		{"head beyond offset", "positions:\n  /a: {inode: 1, offset: 2, head_len: 3}\n", nil, "head_len"},
		{"empty path", "positions:\n  '': {inode: 1, offset: 2}\n", nil, "empty path"},
		{"not a map", "positions: [1, 2]\n", nil, "cannot unmarshal"},
		{"garbage", "\x00\x01{{{", nil, "yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePositions([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestPositionsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sub", "positions.yaml")
	m := map[string]Position{
		"/var/log/kubernetes/audit/audit.log":    {Inode: 1311, Offset: 52301, Line: 40, HeadLen: 1024, HeadHash: 0xfeedfacecafebeef},
		`/odd path/with "quotes": and colon.log`: {Inode: 2, Offset: 0},
	}
	data, err := encodePositions(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteFile(file, data); err != nil {
		t.Fatal(err)
	}
	back, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parsePositions(back)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip: %v %v\n%s", got, err, back)
	}
}

func TestLoadPositionsMovesACorruptFileAside(t *testing.T) {
	file := filepath.Join(t.TempDir(), "positions.yaml")
	os.WriteFile(file, []byte("positions: {a: {offset: -1}}"), 0o600)
	s, found, corrupt, err := loadPositions(file)
	if err != nil || found || corrupt == nil || len(s.snapshot()) != 0 {
		t.Fatalf("got found=%v corrupt=%v err=%v", found, corrupt, err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("corrupt file still in place")
	}
}

// FuzzPositions: the reader never panics, and whatever it accepts is written
// back and read again unchanged.
func FuzzPositions(f *testing.F) {
	for _, s := range []string{"", "positions: {}\n", "positions:\n  /a: {inode: 1, offset: 2, line: 1}\n",
		`{"positions":{"/a":{"inode":1,"offset":2,"head_len":1,"head_hash":99}}}`, "positions:\n  ? [a]\n  : 1\n", "&a [*a]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parsePositions(data)
		if err != nil {
			return
		}
		out, err := encodePositions(m)
		if err != nil {
			t.Fatalf("accepted positions do not encode: %v", err)
		}
		back, err := parsePositions(out)
		if err != nil {
			t.Fatalf("written positions do not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, m) {
			t.Fatalf("round trip changed the positions:\n%v\n%v\n%s", m, back, out)
		}
	})
}
