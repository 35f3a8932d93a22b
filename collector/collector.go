// Package collector holds kubesift's per-cluster sources — the audit webhook
// receiver, the audit log tail, the Events informers, the objects informers —
// and the publisher that carries their records to Kafka. Leader-only sources
// campaign for their Lease through Campaign (leader.go).
//
// # The contract between sources and the publisher
//
// A source turns its input into record.Records (stamped with the cluster
// identity, redacted, size-capped) and hands them to a Publisher in batches.
// Publish returns nil only when every record of the batch is durable: Kafka
// acknowledged it with acks=all, or the on-disk spool has written it (and
// fsynced it when the spool is configured to). Only then may the source
// acknowledge its own input — answer 2xx to the API server, advance the tail's
// position, mark the Event seen. So a crash at any point loses nothing that
// was acknowledged upstream; it can only cause a re-delivery, which carries the
// same record ID.
//
// One record never fails its batch: a record the publisher can never send
// (larger than its limit after the size policy, or refused for good by
// Kafka) goes to the dead-letter topic with the reason and its record ID, in
// its place, and Publish returns nil once that dead letter and the rest of
// the batch are durable. So a source's errors are about the batch as a
// whole, never about one of its records.
//
// "Retry" means: Publish returned an error. ErrBackpressure says the spool is
// full or the publisher is shutting down — the source must stop taking input
// (webhook: answer 429/503 so kube-apiserver retries; tail: pause) and try the
// same batch again later. Any other error is a bug or a closed publisher.
//
// Records that cannot become a record at all (malformed input) go to the
// dead-letter topic through PublishDeadLetters, with where they came from and
// why; they are acknowledged upstream once the dead letter is durable.
package collector

import (
	"context"
	"errors"

	"github.com/kubesift/kubesift/record"
)

// ErrBackpressure means the publisher cannot take the batch now; retry later.
var ErrBackpressure = errors.New("collector: publisher is full (spool at its limit); retry later")

// Publisher makes batches of records durable. Implementations are safe for
// concurrent use by several sources.
type Publisher interface {
	// Publish blocks until every record of recs is durable (see the package
	// doc) — or, for a record that can never be sent, its dead letter —,
	// ctx ends, or the publisher refuses with ErrBackpressure. On a
	// non-nil error none, some or all of the records may have been published;
	// the caller retries the whole batch and relies on record IDs to dedupe.
	Publish(ctx context.Context, recs []*record.Record) error
	// PublishDeadLetters makes dead letters durable on the dead-letter topic,
	// as one batch behind the same guarantee as Publish: nil means every one
	// of them is durable. A source hands over all the dead letters of one
	// input together, so that a body full of garbage costs about one Kafka
	// round trip, as a body full of good records does.
	PublishDeadLetters(ctx context.Context, dls []DeadLetter) error
}

// Pipeliner is a Publisher that can keep several batches in flight in order
// (publish.Publisher is one). Begin queues recs like Publish and returns at
// once; the returned function, which must be called exactly once, waits and
// returns what Publish would have. Batches begun one after the other reach
// Kafka in that order per key. A source acknowledges its input in the order
// it began the batches, each only once its wait returned nil — the tail uses
// it to overlap Kafka's round trips instead of waiting for each batch.
//
// A Pipeliner publishes a record from its envelope and Object alone, in
// Begin and in Publish: it never reads the typed views (Audit, CoreEvent,
// Event), so a source may drop them once redaction is done, to save memory
// while the batch waits and is in flight (the tail does). Object must be
// final (redacted, size-capped) by then.
type Pipeliner interface {
	Begin(ctx context.Context, recs []*record.Record) func(context.Context) error
}

// DeadLetter is input that could not be turned into a record.
type DeadLetter struct {
	// Data is the original bytes (possibly cut to the dead-letter size limit).
	Data []byte
	// Source is where it came from: "audit-webhook", "audit-tail", "events",
	// "objects".
	Source string
	// Origin locates it: a file path, a remote address.
	Origin string
	// Offset is the byte offset in the file (tail), or -1.
	Offset int64
	// Line is the 1-based line in the file (tail), or 0.
	Line int
	// Reason is a short stable reason ("syntax", "field", "too_large", …).
	Reason string
	// Error is the full error text naming the field or position.
	Error string
	// Cluster identifies the cluster.
	Cluster record.Cluster
}
