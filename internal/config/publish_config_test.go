package config

import (
	"strings"
	"testing"
	"time"
)

func TestPublishDefaults(t *testing.T) {
	c, err := Parse([]byte("publish:\n  spool:\n    dir: /tmp/s\n"), "p.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	p := c.Publish
	tests := []struct {
		name      string
		got, want any
	}{
		{"dir from file", p.Spool.Dir, "/tmp/s"},
		{"batch timeout is milliseconds", p.BatchTimeout, 10 * time.Millisecond},
		{"compression", p.Compression, "zstd"},
		{"fsync", p.Spool.Fsync, SpoolFsyncAlways},
		{"max bytes kept when section given", p.Spool.MaxBytes, int64(1 << 30)},
		{"segment bytes", p.Spool.SegmentBytes, int64(64 << 20)},
		{"ack timeout", p.AckTimeout, 5 * time.Second},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestPublishValidation(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "publish:\n  spool:\n    max_byte: 1\n", `line 3: publish.spool.max_byte: unknown key (did you mean "max_bytes"?)`},
		{"zero max bytes", "publish:\n  spool:\n    max_bytes: 0\n", "publish.spool.max_bytes: must be positive"},
		{"negative segment", "publish:\n  spool:\n    segment_bytes: -1\n", "publish.spool.segment_bytes: must be positive"},
		{"segment above max", "publish:\n  spool:\n    max_bytes: 2000000\n    segment_bytes: 3000000\n", "publish.spool.segment_bytes: must not exceed publish.spool.max_bytes"},
		{"segment below record", "publish:\n  batch_bytes: 1048576\n  spool:\n    segment_bytes: 1048576\n", "publish.spool.segment_bytes: must be at least publish.batch_bytes"},
		{"fsync", "publish:\n  spool:\n    fsync: sometimes\n", `publish.spool.fsync: "sometimes" is not one of always, interval, never`},
		{"fsync interval", "publish:\n  spool:\n    fsync: interval\n    fsync_interval: 0s\n", "publish.spool.fsync_interval: must be positive"},
		{"empty dir", "publish:\n  spool:\n    dir: \"\"\n", "publish.spool.dir: must not be empty"},
		{"compression", "publish:\n  compression: brotli\n", `publish.compression: "brotli" is not one of zstd, lz4, snappy, gzip, none`},
		{"batch timeout", "publish:\n  batch_timeout: 0s\n", "publish.batch_timeout: must be positive"},
		{"batch timeout type", "publish:\n  batch_timeout: soon\n", "line 2"},
		{"batch size", "publish:\n  batch_size: 0\n", "publish.batch_size: must be positive"},
		{"attempts", "publish:\n  max_attempts: 0\n", "publish.max_attempts: must be positive"},
		{"ack timeout", "publish:\n  ack_timeout: -1s\n", "publish.ack_timeout: must be positive"},
		{"in flight below batch", "publish:\n  batch_bytes: 2000000\n  max_in_flight_bytes: 1000000\n", "publish.max_in_flight_bytes: must be at least publish.batch_bytes"},
		{"drain batch above in flight", "publish:\n  spool:\n    drain_batch_bytes: 999999999\n", "publish.spool.drain_batch_bytes: must not exceed publish.max_in_flight_bytes"},
		{"retry backoff", "publish:\n  spool:\n    retry_backoff: 0s\n", "publish.spool.retry_backoff: must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "p.yaml", func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestPublishReportsEveryProblem(t *testing.T) {
	_, err := Parse([]byte("publish:\n  batch_size: 0\n  spool:\n    max_bytes: 0\n    fsync: x\n"), "p.yaml", nil)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"publish.batch_size", "publish.spool.max_bytes", "publish.spool.fsync"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
}
