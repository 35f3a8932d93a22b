package record

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// TestDecodeErrorEnd: End is where decoding resumed, so [Offset, End) is
// the whole bad stretch — a truncated line together with the garbage it ran
// into, and never the next good document.
func TestDecodeErrorEnd(t *testing.T) {
	good := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a1","stage":"ResponseComplete","verb":"get","user":{"username":"u"},"requestURI":"/api","stageTimestamp":"2026-01-01T00:00:00.000000Z"}`
	tests := []struct {
		name, input string
		wantBad     string // the bad stretch, as [Offset, End) of input
		wantRecs    int
	}{
		{"bad line", "{not json\n" + good + "\n", "{not json\n", 1},
		{"truncated line runs into garbage", `{"kind":"Event","au` + "\ngarbage\n" + good + "\n", `{"kind":"Event","au` + "\ngarbage\n", 1},
		{"good line first", good + "\n{oops\n", "{oops\n", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder(strings.NewReader(tc.input), "in", DecodeOptions{})
			recs := 0
			var bad []string
			for {
				_, err := d.Next()
				if err == io.EOF {
					break
				}
				var de *DecodeError
				if errors.As(err, &de) {
					bad = append(bad, tc.input[de.Offset:de.End])
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				recs++
			}
			if recs != tc.wantRecs || len(bad) != 1 || bad[0] != tc.wantBad {
				t.Fatalf("records %d, bad stretches %q; want %d and %q", recs, bad, tc.wantRecs, tc.wantBad)
			}
		})
	}
}
