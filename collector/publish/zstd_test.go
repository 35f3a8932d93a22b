package publish

import (
	"bytes"
	"io"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/segmentio/kafka-go/compress"
)

func TestZstdCodecRoundTrip(t *testing.T) {
	codec, ok := compress.Codecs[compress.Zstd].(*zstdCodec)
	if !ok {
		t.Fatalf("kafka-go's zstd codec is %T, want the publisher's", compress.Codecs[compress.Zstd])
	}
	inputs := map[string][]byte{
		"empty":      nil,
		"json batch": bytes.Repeat([]byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","verb":"list"}`), 20000),
		"over the window": func() []byte {
			b := make([]byte, 3*zstdWindow)
			for i := range b {
				b[i] = byte(i * 7 % 251)
			}
			return b
		}(),
	}
	var wg sync.WaitGroup
	for name, in := range inputs {
		for range 4 { // concurrently, to exercise the pool
			wg.Go(func() {
				var buf bytes.Buffer
				w := codec.NewWriter(&buf)
				if _, err := w.Write(in); err != nil {
					t.Errorf("%s: write: %v", name, err)
					return
				}
				if err := w.Close(); err != nil {
					t.Errorf("%s: close: %v", name, err)
					return
				}
				// kafka-go's reader and a plain zstd decoder both read it.
				r := codec.NewReader(bytes.NewReader(buf.Bytes()))
				got, err := io.ReadAll(r)
				r.Close()
				if err != nil || !bytes.Equal(got, in) {
					t.Errorf("%s: kafka-go reader: %d bytes, %v", name, len(got), err)
				}
				d, _ := zstd.NewReader(nil)
				got, err = d.DecodeAll(buf.Bytes(), nil)
				d.Close()
				if err != nil || !bytes.Equal(got, in) {
					t.Errorf("%s: zstd decoder: %d bytes, %v", name, len(got), err)
				}
			})
		}
	}
	wg.Wait()
	if n, c := len(codec.pool), cap(codec.pool); n > c {
		t.Errorf("pool holds %d encoders, cap %d", n, c)
	}
}
