// Package sink holds kubesift's destinations and the contract they share:
//
//   - sink/ecs builds the documents (ECS fields, the audit record under the
//     names Elastic's Kubernetes audit_logs integration uses); every document
//     store — Elasticsearch, the local NDJSON store of `kubesift run` — writes
//     exactly what it builds, so the two can never drift.
//   - sink/elasticsearch installs templates and data streams and writes
//     documents in bulk.
//   - sink/notify delivers alerts to Slack and webhooks.
//
// # The Writer contract
//
// The processor hands a Writer one Doc at a time with Add and learns its fate
// through the done callback; it commits a Kafka offset only after every Doc
// made from that message was done (pipeline.Tracker). This is the per-item
// form of "Write(ctx, batch) (retryable, err)" that ARCHITECTURE.md sketched:
// a bulk request succeeds or fails item by item, and the processor must send
// exactly the failed items to the dead-letter topic, so a batch-level result
// would throw away what it needs.
//
//   - done means final. done is called exactly once per accepted Doc with
//     Indexed (written), Duplicate (a document with that ID exists: the record
//     was delivered before, which idempotent at-least-once expects) or
//     Rejected (the store refused this document for good — a mapping or parse
//     error, any other per-item 4xx; Reason says why without document
//     contents). Only then may the caller acknowledge the Kafka message.
//   - retry is the Writer's business, not the caller's: 429, 5xx and network
//     failures are retried inside the Writer with backoff (Do, Retryable) for
//     as long as it takes, so done never reports them. While the store is
//     refusing, the Writer's bounded queue fills and Add blocks — that blocks
//     the consumer, which is the backpressure: nothing piles up in memory.
//   - A refusal of the whole request for the writer's credentials (401,
//     403) is held and retried like a 5xx, logged and counted: the store
//     refuses kubesift, not the document, and dead-lettering every record
//     because an API key expired would move the whole stream out of Kafka's
//     order into the dead-letter topic. The status classifier still calls
//     these final for a single request; the writer's choice is to wait.
//   - Add returns an error only when ctx ends or the Writer is closed; the Doc
//     was then not accepted and done will not be called for it.
//   - Close stops accepting, flushes what was accepted and waits for every
//     done, or gives up when ctx ends (the undone records are simply not
//     committed, and Kafka re-delivers them).
package sink

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/kubesift/kubesift/internal/backoff"
)

// Doc is one document for a store.
type Doc struct {
	// Index is the data stream or index the document belongs to.
	Index string
	// ID is the document _id: the record ID or the alert ID. Stores write
	// with create semantics, so a second write of one ID is a Duplicate
	// (unless Version is set).
	ID string
	// Body is the JSON document.
	Body []byte
	// Version, when positive, replaces create semantics with a versioned
	// write of the current state of something (a posture finding): the
	// store keeps the document only if Version is greater than the stored
	// one's, so a late or replayed write never replaces a newer state. A
	// store that refuses it for its version reports Duplicate — the newer
	// (or the same) state is there — and counts it apart from re-deliveries.
	Version int64
}

// Status is the final fate of one Doc.
type Status int

// The statuses a done callback receives.
const (
	// Indexed: the store has the document.
	Indexed Status = iota + 1
	// Duplicate: the store already had a document with this ID (a
	// re-delivery); counts as success.
	Duplicate
	// Rejected: the store refused the document for good; Reason says why.
	Rejected
)

// String names the status for logs and metric labels.
func (s Status) String() string {
	switch s {
	case Indexed:
		return "indexed"
	case Duplicate:
		return "duplicate"
	case Rejected:
		return "rejected"
	}
	return "unknown"
}

// Result is what done receives.
type Result struct {
	Status Status
	// Reason is set for Rejected: the store's error type and reason, e.g.
	// "mapper_parsing_exception: failed to parse field [x]". It never holds
	// the document's contents.
	Reason string
}

// Writer writes documents; see the package doc for what done and retry mean.
// Implementations are safe for concurrent use.
type Writer interface {
	Add(ctx context.Context, d Doc, done func(Result)) error
	Close(ctx context.Context) error
}

// Retryable is the one status classifier of every sink and notifier: 2xx is
// success (not retryable, no error); 429 and 5xx are retryable; any other
// status fails for good. A non-nil err means there was no response (refused
// connection, reset, timeout) and is retryable, except a cancellation: Do
// stops anyway once its own ctx has ended, so a per-request timeout stays
// retryable while the caller's deadline does not.
func Retryable(status int, err error) bool {
	if err != nil {
		return !errors.Is(err, context.Canceled)
	}
	return status == http.StatusTooManyRequests || status >= 500
}

// RetryAfter lets an attempt ask for a specific wait (a 429's Retry-After);
// Do honours it instead of its own backoff for that retry, capped by Max.
type RetryAfter interface{ RetryAfter() time.Duration }

// ErrGaveUp wraps the last error when Do used all its attempts.
var ErrGaveUp = errors.New("gave up after retries")

// Do is the one retry wrapper: it calls attempt until it succeeds, returns a
// non-retryable error, uses up b.Attempts, or ctx ends. attempt reports
// whether its error is retryable (use Retryable). onRetry, if not nil, is
// called before each wait (b.Wait(n), or an attempt's RetryAfter) with the
// attempt number and its error, for logs and metrics. The returned error
// wraps the last attempt's error and, when ctx ended a retryable run, ctx's
// error too.
func Do(ctx context.Context, b backoff.Policy, attempt func(ctx context.Context) (retryable bool, err error), onRetry func(n int, err error)) error {
	for n := 1; ; n++ {
		retryable, err := attempt(ctx)
		if err == nil {
			return nil
		}
		if !retryable {
			return err
		}
		if ctx.Err() != nil {
			// The context may end during the attempt as well as during the
			// wait; either way the caller learns both why it stopped and
			// what the store last said.
			return errors.Join(ctx.Err(), err)
		}
		if b.Attempts > 0 && n >= b.Attempts {
			return errors.Join(ErrGaveUp, err)
		}
		if onRetry != nil {
			onRetry(n, err)
		}
		d := b.Wait(n)
		var ra RetryAfter
		if errors.As(err, &ra) && ra.RetryAfter() > 0 {
			d = ra.RetryAfter()
			if b.Max > 0 {
				d = min(d, b.Max)
			}
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(ctx.Err(), err)
		case <-t.C:
		}
	}
}

// StatusError is a non-2xx answer of an HTTP store or receiver. Its message
// names the status and, if given, what was being done — never the URL's
// secret parts or the body sent.
type StatusError struct {
	Op         string // e.g. "bulk", "slack post"
	StatusCode int
	// After is the server's Retry-After, if it sent one.
	After time.Duration
	// Detail is a short server-side reason (error type), without payloads.
	Detail string
}

func (e *StatusError) Error() string {
	msg := e.Op + ": HTTP " + strconv.Itoa(e.StatusCode)
	if t := http.StatusText(e.StatusCode); t != "" {
		msg += " " + t
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// RetryAfter implements RetryAfter.
func (e *StatusError) RetryAfter() time.Duration { return e.After }

// Retryable reports whether the status is worth retrying (Retryable).
func (e *StatusError) Retryable() bool { return Retryable(e.StatusCode, nil) }
