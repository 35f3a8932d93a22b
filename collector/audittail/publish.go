package audittail

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/record"
)

// Retrying a batch, and when to stop.
//
// The committer publishes a batch and retries it until it is durable: the
// file's position may not pass a line before it is. Backpressure (the spool
// full, the publisher closing) is transient by definition — the spool
// covers a Kafka outage, and it drains — so the tail waits for it as long
// as it lasts, reading nothing meanwhile. Any other error says something
// about the batch; if it lasts permanentAttempts attempts it is taken to be
// about one of its records, and the batch is published one record at a
// time: each record that still fails permanentAttempts times alone goes to
// the dead-letter topic, and the position moves past the batch. So one
// line can never hold back the lines after it, in this run or after a
// restart.

// permanentAttempts is how often a batch (and then each of its records
// alone) is tried with an error other than backpressure before its records
// that still fail are dead-lettered. With publishBackoff this is about
// 1.5 s per batch.
const permanentAttempts = 5

// ReasonPublish is the dead-letter reason of a record the publisher refused
// for good (not backpressure) permanentAttempts times.
const ReasonPublish = "publish_refused"

// publish makes b's dead letters and records durable, retrying the same
// batch with exponential backoff while the publisher refuses.
func (f *follower) publish(ctx context.Context, b *batch) bool {
	return f.publishDeadLetters(ctx, b) && f.publishRecords(ctx, b)
}

func (f *follower) publishDeadLetters(ctx context.Context, b *batch) bool {
	retried := 0
	for len(b.dls) > 0 {
		err := f.t.pub.PublishDeadLetters(ctx, b.dls)
		if err == nil {
			for _, dl := range b.dls {
				f.t.m.deadLetters.WithLabelValues(dl.Reason).Inc()
			}
			break
		}
		if !f.retryWait(ctx, err, &retried) {
			return false
		}
	}
	if retried > 0 {
		f.log.Info("publisher accepted the dead letters again", "retries", retried)
	}
	return true
}

// publishRecords publishes b's records, waiting out backpressure; after
// permanentAttempts other errors it publishes them one at a time
// (publishAlone). false: ctx ended first.
func (f *follower) publishRecords(ctx context.Context, b *batch) bool {
	if len(b.recs) == 0 {
		return true
	}
	ok, err := f.tryPublish(ctx, b.recs)
	if !ok {
		return false
	}
	if err == nil {
		return true
	}
	f.logLimit.Warn(f.log, "isolate", "publisher kept refusing a batch; publishing its records one at a time",
		"attempts", permanentAttempts, "records", len(b.recs), "err", err)
	var dls []collector.DeadLetter
	for _, r := range b.recs {
		ok, err := f.tryPublish(ctx, []*record.Record{r})
		if !ok {
			return false
		}
		if err != nil {
			f.logLimit.Warn(f.log, "publish-refused", "publisher refused a record for good; sent to the dead-letter topic", "id", r.ID, "err", err)
			dls = append(dls, f.deadLetter(r.Object, ReasonPublish,
				fmt.Sprintf("%s: record %s refused %d times by the publisher: %v", f.name, r.ID, permanentAttempts, err), -1, 0))
		}
	}
	return f.publishDeadLetters(ctx, &batch{dls: dls})
}

// tryPublish publishes recs, retrying while the publisher refuses them.
// It returns nil once they are durable, or the last error after
// permanentAttempts errors other than backpressure; ok is false when ctx
// ended first.
func (f *follower) tryPublish(ctx context.Context, recs []*record.Record) (ok bool, err error) {
	retried, failed := 0, 0
	for {
		err = f.t.pub.Publish(ctx, recs)
		if err == nil {
			break
		}
		if !errors.Is(err, collector.ErrBackpressure) && ctx.Err() == nil {
			if failed++; failed >= permanentAttempts {
				return true, err
			}
		}
		if !f.retryWait(ctx, err, &retried) {
			return false, nil
		}
	}
	if retried > 0 {
		f.log.Info("publisher accepted the batch again", "retries", retried)
	}
	return true, nil
}

// publishBackoff spaces the retries of a refused batch: 100ms doubling to 5s.
// It has no jitter: a file's follower is the only client of its batch, so
// there is nothing to spread, and permanentAttempts' wall time stays exact.
var publishBackoff = backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}

// retryWait counts and logs a refused publish and waits the next step of
// publishBackoff (*retried, the retries so far, picks the step); false
// when ctx ended.
func (f *follower) retryWait(ctx context.Context, err error, retried *int) bool {
	if ctx.Err() != nil {
		return false
	}
	reason := retryError
	if errors.Is(err, collector.ErrBackpressure) {
		reason = retryBackpressure
	}
	*retried++
	wait := publishBackoff.Delay(*retried)
	f.t.m.retries.WithLabelValues(f.path, reason).Inc()
	f.logLimit.Warn(f.log, "retry-"+reason, "publisher refused a batch; pausing the tail and retrying the same batch", "reason", reason, "err", err, "backoff", wait)
	return sleepCtx(ctx, wait)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		d = time.Millisecond
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
