package ndjson

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubesift/kubesift/sink"
)

// FuzzReopen: whatever an existing output file holds (edited, truncated,
// not JSON, versions of any type), opening the store never panics, a new
// document is written, and a versioned document of a new ID too.
func FuzzReopen(f *testing.F) {
	f.Add([]byte(`{"event":{"id":"a"}}` + "\n"))
	f.Add([]byte(`{"event":{"id":"a"}}` + "\n" + `{"event":` + "\n"))
	f.Add([]byte("not json\n\n\x00\xff"))
	f.Add([]byte(`{"event":{"id":["a"]}}`))
	f.Add([]byte(`{"event":{"id":"a"},"kubesift":{"finding":{"version":7}}}` + "\n" + `{"event":{"id":"a"},"kubesift":{"finding":{"version":"x"}}}`))
	f.Add([]byte(`{"event":{"id":"a"},"kubesift":{"finding":{"version":-3e400}}}` + "\n" + `{"event":{"id":"b"},"kubesift":{"finding":[1]}}`))
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
		v := sink.Doc{Index: "logs-x", ID: "zz-versioned", Version: 1, Body: vline("zz-versioned", 1)}
		if err := w.Add(context.Background(), v, func(r sink.Result) { done <- r }); err != nil {
			t.Fatal(err)
		}
		if r := <-done; r.Status != sink.Indexed && !bytes.Contains(data, []byte("zz-versioned")) {
			t.Fatalf("a versioned document of a new ID: %v %s, want indexed", r.Status, r.Reason)
		}
	})
}
