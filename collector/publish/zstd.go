package publish

import (
	"io"
	"runtime"

	"github.com/klauspost/compress/zstd"
	"github.com/segmentio/kafka-go/compress"
)

// kafka-go's zstd codec creates encoders with the library's default window
// (8 MiB of history per encoder) and keeps them in a sync.Pool, which every
// GC empties — so under load it allocates a fresh multi-megabyte encoder
// again and again, and several live at once (one per partition writer):
// enough to dominate the publisher's peak RSS (BenchmarkPublishRealBroker
// reports it).
//
// A Kafka batch is at most publish.batch_bytes (1 MiB by default) and is
// compressed on its own, so a window larger than that buys nothing. This
// codec uses a 1 MiB window, the library's lower-memory mode and a bounded
// pool that survives GC. Frames are standard zstd: any consumer decodes them.
//
// kafka-go looks codecs up in a package-level table, so the codec is
// installed there, once, at package initialisation — before any kafka-go
// client of this process can run. Decompression is left to the original
// codec.
const zstdWindow = 1 << 20

func init() {
	orig := compress.Codecs[compress.Zstd]
	compress.Codecs[compress.Zstd] = &zstdCodec{
		decoder: orig,
		pool:    make(chan *zstd.Encoder, 2*runtime.GOMAXPROCS(0)),
	}
}

type zstdCodec struct {
	decoder compress.Codec
	pool    chan *zstd.Encoder
}

// Code implements compress.Codec.
func (c *zstdCodec) Code() int8 { return int8(compress.Zstd) }

// Name implements compress.Codec.
func (c *zstdCodec) Name() string { return "zstd" }

// NewReader implements compress.Codec with kafka-go's own decoder.
func (c *zstdCodec) NewReader(r io.Reader) io.ReadCloser { return c.decoder.NewReader(r) }

// NewWriter implements compress.Codec.
func (c *zstdCodec) NewWriter(w io.Writer) io.WriteCloser {
	select {
	case enc := <-c.pool:
		enc.Reset(w)
		return &zstdWriter{c: c, enc: enc}
	default:
	}
	enc, err := zstd.NewWriter(w,
		// kafka-go's default level (3 = SpeedDefault).
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		// One batch is compressed by one goroutine; concurrency would only
		// add buffers.
		zstd.WithEncoderConcurrency(1),
		zstd.WithZeroFrames(true),
		zstd.WithWindowSize(zstdWindow),
		zstd.WithLowerEncoderMem(true),
	)
	if err != nil {
		return &zstdWriter{err: err}
	}
	return &zstdWriter{c: c, enc: enc}
}

type zstdWriter struct {
	c   *zstdCodec
	enc *zstd.Encoder
	err error
}

func (w *zstdWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.enc == nil {
		return 0, io.ErrClosedPipe
	}
	return w.enc.Write(p)
}

func (w *zstdWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.enc == nil {
		return 0, io.ErrClosedPipe
	}
	return w.enc.ReadFrom(r)
}

// Close writes the end of the frame and returns the encoder to the pool
// (dropping it when the pool is full, so the pool stays bounded).
func (w *zstdWriter) Close() error {
	if w.enc == nil {
		return w.err
	}
	err := w.enc.Close()
	w.enc.Reset(io.Discard) // do not keep the batch buffer alive
	select {
	case w.c.pool <- w.enc:
	default:
	}
	w.enc = nil
	return err
}
