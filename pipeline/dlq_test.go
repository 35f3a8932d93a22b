package pipeline

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func TestReasonType(t *testing.T) {
	tests := []struct{ reason, want string }{
		{"mapper_parsing_exception: failed to parse field [x] of type [long]", "mapper_parsing_exception"},
		{"document_parsing_exception: [1:62689] failed to parse: Limit of total fields [2000]", "document_parsing_exception"},
		{"version_conflict_engine_exception", "version_conflict_engine_exception"},
		{"", "rejected"},
		{"failed to parse [x]: something", "rejected"}, // not a type name: the label stays bounded
		{strings.Repeat("a", 100) + ": long", "rejected"},
	}
	for _, tc := range tests {
		if got := reasonType(tc.reason); got != tc.want {
			t.Errorf("reasonType(%q) = %q, want %q", tc.reason, got, tc.want)
		}
	}
}

func TestDeadLetterMessage(t *testing.T) {
	orig := kafka.Message{Topic: "audit", Partition: 3, Offset: 42, Key: []byte("c/alice"),
		Headers: []kafka.Header{{Key: "kubesift-id", Value: []byte("a:b")}, {Key: HeaderDLQStage, Value: []byte("old")}}}
	tests := []struct {
		name      string
		value     []byte
		err       string
		maxBytes  int64
		truncated bool
	}{
		{"fits", []byte(`{"schema":1}`), "decode failed", 1 << 20, false},
		{"value cut to the batch size", []byte(strings.Repeat("v", 200000)), "x", 100000, true},
		{"error text capped", []byte("v"), strings.Repeat("e", 10000), 1 << 20, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dl := deadLetter{orig: orig, kind: kindRecord, value: tc.value, stage: StageDecode, reason: "decode", err: tc.err}
			m := dl.message("dlq", tc.maxBytes)
			if m.Topic != "dlq" || string(m.Key) != "c/alice" {
				t.Errorf("topic %q key %q", m.Topic, m.Key)
			}
			want := map[string]string{HeaderDLQSource: SourceProcessor, HeaderDLQStage: StageDecode, HeaderDLQReason: "decode",
				HeaderDLQOrigin: "audit", HeaderDLQPartition: "3", HeaderDLQOffset: "42", HeaderDLQKind: kindRecord, "kubesift-id": "a:b"}
			got := map[string]int{}
			for _, h := range m.Headers {
				got[h.Key]++
			}
			for k, v := range want {
				if header(m, k) != v || got[k] != 1 {
					t.Errorf("header %s = %q (%d times), want %q once", k, header(m, k), got[k], v)
				}
			}
			if n := len(header(m, HeaderDLQError)); n > maxDLQErrorLen {
				t.Errorf("error header %d bytes, cap %d", n, maxDLQErrorLen)
			}
			if tc.truncated {
				if header(m, HeaderDLQTruncated) != strconv.Itoa(len(tc.value)) || messageSize(m) > tc.maxBytes {
					t.Errorf("cut to %d bytes (message %d, limit %d), truncated header %q", len(m.Value), messageSize(m), tc.maxBytes, header(m, HeaderDLQTruncated))
				}
			} else if string(m.Value) != string(tc.value) || header(m, HeaderDLQTruncated) != "" {
				t.Errorf("value changed or marked truncated")
			}
		})
	}
}

func TestWindow(t *testing.T) {
	tests := []struct {
		name        string
		maxN        int64
		maxBytes    int64
		sizes       []int64 // acquired in order without release
		blockedSize int64   // the next acquire, which must block
	}{
		{"message count", 2, 1 << 20, []int64{10, 10}, 10},
		{"bytes", 100, 100, []int64{60, 30}, 20},
		{"an oversized message alone passes", 100, 100, []int64{500}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWindow(tc.maxN, tc.maxBytes, nil)
			for _, s := range tc.sizes {
				if err := w.acquire(context.Background(), s); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if err := w.acquire(ctx, tc.blockedSize); err == nil {
				t.Fatal("acquire beyond the bound did not block")
			}
			got := make(chan error, 1)
			go func() { got <- w.acquire(context.Background(), tc.blockedSize) }()
			w.release(tc.sizes[0])
			if err := <-got; err != nil {
				t.Fatal(err)
			}
			for _, s := range tc.sizes[1:] {
				w.release(s)
			}
			w.release(tc.blockedSize)
			if n, b := w.inFlight(); n != 0 || b != 0 {
				t.Fatalf("in flight %d/%d after releasing everything", n, b)
			}
			if !w.drain(context.Background()) {
				t.Fatal("drain of an empty window")
			}
		})
	}
}
