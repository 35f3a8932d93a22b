package publish

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/config"
)

func seedSegment(msgs ...outMsg) []byte {
	b := []byte(segMagic)
	for i := range msgs {
		b = appendEntry(b, encodePayload(nil, &msgs[i]))
	}
	return b
}

// FuzzSpoolSegment feeds arbitrary bytes to the segment decoders — the
// in-memory entry decoder, the recovery scan, the payload decoder, and a
// spool opened on a directory holding the bytes as its only segment. None
// may panic or allocate without bound; the decoders must agree on where the
// valid data ends, and what they accept must round-trip.
func FuzzSpoolSegment(f *testing.F) {
	m := outMsg{kind: kindAudit, key: []byte("prod/alice"), value: []byte(`{"schema":1}`),
		headers: []kafka.Header{{Key: "kubesift-id", Value: []byte("a:b")}, {Key: "x", Value: nil}}}
	valid := seedSegment(m, outMsg{kind: kindDLQ, value: []byte("bad input")}, m)
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add(valid[:segHeaderSize+5])
	flipped := bytes.Clone(valid)
	flipped[len(flipped)-1] ^= 0x40
	f.Add(flipped)
	f.Add([]byte(segMagic + "\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Add([]byte(segMagic + "\xff\xff\xff\x7f\x00\x00\x00\x00"))
	f.Add([]byte("KSSPOOL"))

	f.Fuzz(func(t *testing.T, data []byte) {
		// 1. The in-memory decoder over the bytes after the header.
		memEnd := int64(-1)
		if len(data) >= int(segHeaderSize) && string(data[:segHeaderSize]) == segMagic {
			off := int(segHeaderSize)
			for {
				p, n, err := decodeEntry(data[off:])
				if err != nil {
					break
				}
				if n <= entryHeaderSize || off+n > len(data) {
					t.Fatalf("decodeEntry size %d at %d of %d", n, off, len(data))
				}
				checkPayload(t, p)
				off += n
			}
			memEnd = int64(off)
		}

		// 2. The streaming scan used at recovery must stop at the same place.
		end, err := scanSegment(bytes.NewReader(data), int64(len(data)), func(_ int64, p []byte) error {
			checkPayload(t, p)
			return nil
		})
		if err != nil && !errors.Is(err, errShortEntry) && !errors.Is(err, errCorruptEntry) {
			t.Fatalf("scanSegment: unexpected error %v", err)
		}
		if memEnd >= 0 && end != memEnd {
			t.Fatalf("scanSegment stopped at %d, decodeEntry at %d", end, memEnd)
		}

		// 3. A spool on a directory holding the bytes as a segment opens
		// (or refuses a foreign header) and drains without panicking.
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d%s", 1, segSuffix)), data, 0o640); err != nil {
			t.Fatal(err)
		}
		s, err := openSpool(spoolOptions{Dir: dir, MaxBytes: 1 << 30, SegmentBytes: 1 << 20, Fsync: config.SpoolFsyncNever})
		if err != nil {
			return // not a segment (bad header): refused, fine
		}
		defer s.Close()
		for range 1000 {
			if !s.Unread() {
				break
			}
			es, pos, err := s.Read(64)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			for _, e := range es {
				checkPayload(t, e.payload)
			}
			if err := s.Commit(pos); err != nil {
				t.Fatal(err)
			}
		}
		if !s.Empty() {
			t.Fatal("spool not empty after draining")
		}
	})
}

// checkPayload decodes p; what decodes must survive encode → decode.
func checkPayload(t *testing.T, p []byte) {
	m, err := decodePayload(p)
	if err != nil {
		return
	}
	again, err := decodePayload(encodePayload(nil, &m))
	if err != nil {
		t.Fatalf("re-encoded payload does not decode: %v", err)
	}
	if again.kind != m.kind || !bytes.Equal(again.key, m.key) || !bytes.Equal(again.value, m.value) || len(again.headers) != len(m.headers) {
		t.Fatalf("round trip changed the message: %+v -> %+v", m, again)
	}
	for i := range m.headers {
		if again.headers[i].Key != m.headers[i].Key || !bytes.Equal(again.headers[i].Value, m.headers[i].Value) {
			t.Fatalf("round trip changed header %d", i)
		}
	}
}
