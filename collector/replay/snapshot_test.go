package replay

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/record"
)

// TestPublishSnapshots: the object records of <dir>/objects/*.ndjson are
// published stamped with the replay's cluster (key included), backpressure
// waited out; a line that is not an object record is dead-lettered naming
// its file and line, and costs that line only.
func TestPublishSnapshots(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, SnapshotDir), 0o700); err != nil {
		t.Fatal(err)
	}
	obj := func(name string) string {
		r, err := record.NewObject(record.ObjectRef{APIVersion: "v1", Kind: "Namespace", Name: name, UID: name + "-uid", ResourceVersion: "7"},
			[]byte(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"`+name+`","uid":"`+name+`-uid","resourceVersion":"7"}}`),
			record.Cluster{Name: "recorded"}, time.Date(2026, 12, 6, 22, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		b, err := record.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	lines := []string{obj("a"), `{"not":"a record"}`, "", obj("b")}
	path := filepath.Join(dir, SnapshotDir, "objects.ndjson")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A replayed directory holds the files Run replays beside the snapshot.
	if err := os.WriteFile(filepath.Join(dir, "audit.log"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	pub := &memPublisher{refuse: 2}
	r, err := New(Options{Paths: []string{dir}, Publisher: pub, Sanitizer: sanitizer(t), Cluster: record.Cluster{Name: "run"}})
	if err != nil {
		t.Fatal(err)
	}
	files, err := r.SnapshotFiles()
	if err != nil || len(files) != 1 || files[0] != path {
		t.Fatalf("SnapshotFiles = %v, %v; want [%s]", files, err, path)
	}
	n, err := r.PublishSnapshots(context.Background(), files)
	if err != nil || n != 2 {
		t.Fatalf("PublishSnapshots = %d, %v; want 2 records", n, err)
	}
	for i, want := range []string{"run/Namespace//a", "run/Namespace//b"} {
		if got := pub.recs[i]; got.Cluster.Name != "run" || got.Key != want || got.Source != record.SourceObject {
			t.Errorf("record %d: cluster %q key %q source %q; want run, %s, object", i, got.Cluster.Name, got.Key, got.Source, want)
		}
	}
	if len(pub.dls) != 1 || pub.dls[0].Line != 2 || pub.dls[0].Origin != path || !strings.Contains(pub.dls[0].Error, "line 2") {
		t.Errorf("dead letters %+v; want one for %s line 2", pub.dls, path)
	}
}
