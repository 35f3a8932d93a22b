package config

import (
	"fmt"
	"time"
)

// PublishConfig configures the collector's Kafka publisher and its disk spool
// (package collector/publish). Acknowledgements are always acks=all and the
// partitioner always hashes the record key; neither is configurable because
// the delivery guarantees depend on them.
type PublishConfig struct {
	// BatchTimeout is how long the writer waits to fill a batch per
	// partition before sending it. Every Publish waits at least this long,
	// so it is milliseconds, not kafka-go's 1 s default.
	BatchTimeout time.Duration `yaml:"batch_timeout"`
	// BatchSize is the most records in one produce batch per partition.
	BatchSize int `yaml:"batch_size"`
	// BatchBytes is the most (uncompressed) bytes in one produce batch per
	// partition; it is also the largest record the publisher accepts, so the
	// sources' size policy must cut records below it. Keep it at or below the
	// brokers' message.max.bytes.
	BatchBytes int64 `yaml:"batch_bytes"`
	// Compression is the batch codec: zstd, lz4, snappy, gzip or none.
	Compression string `yaml:"compression"`
	// MaxAttempts is how often the writer tries one batch before the
	// publisher gives up on Kafka for it and spools its records.
	MaxAttempts int `yaml:"max_attempts"`
	// WriteTimeout bounds one produce request.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// AckTimeout is how long Publish waits for Kafka's acknowledgement
	// before it spools the records instead ("Kafka is slow").
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// MaxInFlightBytes bounds the record bytes handed to the Kafka writer
	// and not yet acknowledged; Publish waits (up to AckTimeout) for room.
	// The default, 8 MiB, is ~3x what the tail keeps in flight at 75 MB/s
	// (three batches of 1,000 1.5 KB events, each acknowledged ~40 ms after
	// it was begun in BenchmarkTailToKafka), and fits the collector's
	// soft memory limit (collector.memory_limit) with room for the rest.
	MaxInFlightBytes int64 `yaml:"max_in_flight_bytes"`
	// Spool configures the on-disk spool used while Kafka is unreachable.
	Spool SpoolConfig `yaml:"spool"`
}

// SpoolConfig configures the publisher's bounded on-disk spool.
type SpoolConfig struct {
	// Dir holds the segment files and the read checkpoint. One publisher
	// per directory (it is locked).
	Dir string `yaml:"dir"`
	// MaxBytes bounds the spool on disk; when an append would exceed it,
	// Publish answers collector.ErrBackpressure.
	MaxBytes int64 `yaml:"max_bytes"`
	// SegmentBytes is the size at which the spool starts a new segment
	// file; drained segments are deleted whole.
	SegmentBytes int64 `yaml:"segment_bytes"`
	// Fsync is when spool writes reach the disk: always (before Publish
	// returns: one fsync per Publish batch — what makes an acknowledged
	// record survive a power loss), interval (every FsyncInterval), never
	// (left to the OS).
	Fsync string `yaml:"fsync"`
	// FsyncInterval is the period of fsync: interval.
	FsyncInterval time.Duration `yaml:"fsync_interval"`
	// DrainBatchBytes is how many spooled bytes the drainer sends to Kafka
	// per round; a round is acknowledged (and checkpointed) as a whole, so
	// it is also the most a crash makes the drainer send twice.
	DrainBatchBytes int64 `yaml:"drain_batch_bytes"`
	// RetryBackoff is the first pause after a failed drain round; it
	// doubles up to 5× this value while Kafka stays away.
	RetryBackoff time.Duration `yaml:"retry_backoff"`
}

// Fsync policies of the spool (publish.spool.fsync).
const (
	SpoolFsyncAlways   = "always"
	SpoolFsyncInterval = "interval"
	SpoolFsyncNever    = "never"
)

func defaultPublish() PublishConfig {
	return PublishConfig{
		BatchTimeout:     10 * time.Millisecond,
		BatchSize:        1000,
		BatchBytes:       1 << 20,
		Compression:      "zstd",
		MaxAttempts:      3,
		WriteTimeout:     10 * time.Second,
		AckTimeout:       5 * time.Second,
		MaxInFlightBytes: 8 << 20,
		Spool: SpoolConfig{
			Dir:             "/var/lib/kubesift/spool",
			MaxBytes:        1 << 30,
			SegmentBytes:    64 << 20,
			Fsync:           SpoolFsyncAlways,
			FsyncInterval:   time.Second,
			DrainBatchBytes: 4 << 20,
			RetryBackoff:    time.Second,
		},
	}
}

// validate adds problems of the publish section, with full field paths
// ("publish.…"), to v.
func (c *PublishConfig) validate(v *validator) {
	positiveDur := func(field string, d time.Duration) {
		if d <= 0 {
			v.add(field, "must be positive")
		}
	}
	positive := func(field string, n int64) bool {
		if n <= 0 {
			v.add(field, "must be positive")
			return false
		}
		return true
	}
	positiveDur("publish.batch_timeout", c.BatchTimeout)
	positive("publish.batch_size", int64(c.BatchSize))
	batchOK := positive("publish.batch_bytes", c.BatchBytes)
	v.oneOf("publish.compression", c.Compression, "zstd", "lz4", "snappy", "gzip", "none")
	positive("publish.max_attempts", int64(c.MaxAttempts))
	positiveDur("publish.write_timeout", c.WriteTimeout)
	positiveDur("publish.ack_timeout", c.AckTimeout)
	// The in-flight window must hold at least one full batch, or a single
	// maximal record could never be sent.
	if positive("publish.max_in_flight_bytes", c.MaxInFlightBytes) && batchOK && c.MaxInFlightBytes < c.BatchBytes {
		v.add("publish.max_in_flight_bytes", fmt.Sprintf("must be at least publish.batch_bytes (%d)", c.BatchBytes))
	}

	s := &c.Spool
	if s.Dir == "" {
		v.add("publish.spool.dir", "must not be empty")
	}
	maxOK := positive("publish.spool.max_bytes", s.MaxBytes)
	if positive("publish.spool.segment_bytes", s.SegmentBytes) {
		// A record is never split across segments, so the largest record
		// (batch_bytes) plus framing must fit in one.
		if batchOK && s.SegmentBytes < c.BatchBytes+spoolOverhead {
			v.add("publish.spool.segment_bytes", fmt.Sprintf("must be at least publish.batch_bytes + %d (%d)", spoolOverhead, c.BatchBytes+spoolOverhead))
		}
		if maxOK && s.SegmentBytes > s.MaxBytes {
			v.add("publish.spool.segment_bytes", "must not exceed publish.spool.max_bytes")
		}
	}
	v.oneOf("publish.spool.fsync", s.Fsync, SpoolFsyncAlways, SpoolFsyncInterval, SpoolFsyncNever)
	if s.Fsync == SpoolFsyncInterval {
		positiveDur("publish.spool.fsync_interval", s.FsyncInterval)
	}
	if positive("publish.spool.drain_batch_bytes", s.DrainBatchBytes) && c.MaxInFlightBytes > 0 && s.DrainBatchBytes > c.MaxInFlightBytes {
		v.add("publish.spool.drain_batch_bytes", "must not exceed publish.max_in_flight_bytes")
	}
	positiveDur("publish.spool.retry_backoff", s.RetryBackoff)
}

// spoolOverhead is a generous bound on the spool's per-segment and per-entry
// framing plus the encoded key and headers of a record, checked here so that
// a configuration whose largest record cannot be spooled is refused at start.
const spoolOverhead = 64 << 10
