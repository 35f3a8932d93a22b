package events

import (
	"context"
	"errors"
	"time"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/record"
)

// Publishing with retries: backpressure is waited out with jittered backoff;
// other errors are narrowed down to the records the publisher refuses, which
// become dead letters.

// publishAttempts is how often a batch is tried after a non-backpressure
// error before its records are published one by one to find the one the
// publisher refuses.
const publishAttempts = 3

// publish publishes recs, retrying: forever on backpressure (the publisher
// asks for it), publishAttempts times on other errors (by the collector
// contract a record the publisher cannot take at all, e.g. one larger than
// publish.batch_bytes). Then the records are tried one by one and the ones
// still refused are returned; they become dead letters. If every record is
// refused the fault is the publisher's, not the records': the batch is
// retried instead. ok is false only when ctx ended.
func (s *session) publish(ctx context.Context, recs []*record.Record) (rejected []int, ok bool) {
	for {
		err := s.publishRetrying(ctx, recs)
		if ctx.Err() != nil {
			return nil, false
		}
		if err == nil {
			return nil, true
		}
		if len(recs) == 1 {
			return []int{0}, true
		}
		rejected = rejected[:0]
		var ids []string
		for i := range recs {
			if err := s.publishRetrying(ctx, recs[i:i+1]); ctx.Err() != nil {
				return nil, false
			} else if err != nil {
				rejected = append(rejected, i)
				if len(ids) < 10 {
					ids = append(ids, recs[i].ID)
				}
			}
		}
		if len(rejected) < len(recs) {
			if len(rejected) > 0 {
				s.log.Error("publisher refuses Event records; sending them to the dead-letter topic", "refused", len(rejected), "of", len(recs), "ids", ids, "err", err)
			}
			return rejected, true
		}
		s.log.Error("publisher refuses every record of a batch; retrying the batch", "records", len(recs), "err", err)
		if !sleep(ctx, 5*time.Second) {
			return nil, false
		}
	}
}

// publishRetrying publishes recs until the publisher acknowledges them
// (nil), refuses them publishAttempts times with an error other than
// backpressure (that error), or ctx ends (ctx's error).
func (s *session) publishRetrying(ctx context.Context, recs []*record.Record) error {
	waits, attempts, logged := 0, 0, false
	for {
		err := s.c.pub.Publish(ctx, recs)
		if err == nil {
			if logged {
				s.log.Info("publishing Events again")
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		backpressure := errors.Is(err, collector.ErrBackpressure)
		if backpressure {
			s.c.m.publishRetries.WithLabelValues("backpressure").Inc()
		} else {
			s.c.m.publishRetries.WithLabelValues("error").Inc()
			if attempts++; attempts >= publishAttempts {
				return err
			}
		}
		if !logged && len(recs) > 1 {
			s.log.Warn("publishing Events failed; retrying", "err", err, "records", len(recs), "backpressure", backpressure)
			logged = true
		}
		if waits++; !sleep(ctx, publishBackoff.Wait(waits)) {
			return ctx.Err()
		}
	}
}

func (s *session) publishDeadLetter(ctx context.Context, dl collector.DeadLetter) bool {
	for waits := 1; ; waits++ {
		err := s.c.pub.PublishDeadLetters(ctx, []collector.DeadLetter{dl})
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.log.Warn("publishing an Event dead letter failed; retrying", "reason", dl.Reason, "err", err)
		if !sleep(ctx, publishBackoff.Wait(waits)) {
			return false
		}
	}
}

// publishBackoff spaces the retries of a refused publish (records and dead
// letters): 100ms doubling to 5s, with equal jitter (internal/backoff).
var publishBackoff = backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
