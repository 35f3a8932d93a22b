package report

import (
	"bufio"
	"os"
	"path/filepath"
	"testing"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/sink"
)

// BenchmarkDirSummary reads a folder of 50 copies of the fixture (10,000
// audit records, 2,000 alerts, 1,400 Events) into a Summary, beside the
// baseline of only splitting the same files into lines: the difference is
// the cost of decoding and aggregating.
func BenchmarkDirSummary(b *testing.B) {
	cfg := config.Default().Sink.Elasticsearch
	one := fixture(b, cfg)
	var docs []sink.Doc
	for range 50 {
		docs = append(docs, one...)
	}
	dir := b.TempDir()
	writeDir(b, dir, docs)
	var size int64
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			b.Fatal(err)
		}
		size += st.Size()
	}
	b.Run("baseline-lines", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			for _, f := range files {
				fh, err := os.Open(f)
				if err != nil {
					b.Fatal(err)
				}
				sc := bufio.NewScanner(fh)
				sc.Buffer(make([]byte, 64<<10), maxLineBytes)
				for sc.Scan() {
				}
				fh.Close()
			}
		}
	})
	b.Run("summary", func(b *testing.B) {
		d, err := NewDir(dir, IndicesFrom(cfg), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(size)
		for b.Loop() {
			if _, err := d.Summary(b.Context(), Window{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
