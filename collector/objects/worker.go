package objects

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/record"
)

// publishBackoff spaces the retries of a batch the publisher did not take.
var publishBackoff = backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}

// hashSeed is fixed for the process: hashes are only compared within it.
var hashSeed = maphash.MakeSeed()

// work publishes queued keys in batches until the queue is shut down and
// empty, or ctx ends (shutdown_grace passed).
func (ss *session) work(ctx context.Context) {
	for {
		batch, ok := ss.nextBatch(ctx)
		if len(batch) > 0 {
			ss.publishBatch(ctx, batch)
		}
		if !ok || ctx.Err() != nil {
			return
		}
		if ss.queue.Len() == 0 && ss.overflow.Load() {
			ss.requeue()
		}
	}
}

// nextBatch blocks for one key, then takes what else is queued, waiting up
// to batch.max_wait for more while the batch is not full. ok is false once
// the queue is shut down and empty.
func (ss *session) nextBatch(ctx context.Context) (batch []string, ok bool) {
	key, shutdown := ss.queue.Get()
	if shutdown {
		return nil, false
	}
	batch = append(batch, key)
	max := ss.s.cfg.Batch.MaxRecords
	deadline := time.NewTimer(ss.s.cfg.Batch.MaxWait)
	defer deadline.Stop()
	for len(batch) < max {
		if ss.queue.Len() > 0 {
			k, shutdown := ss.queue.Get()
			if shutdown {
				return batch, false
			}
			batch = append(batch, k)
			continue
		}
		if ss.queue.ShuttingDown() {
			return batch, true
		}
		select {
		case <-ss.kick:
		case <-deadline.C:
			return batch, true
		case <-ctx.Done():
			return batch, true
		}
	}
	return batch, true
}

// outcome is what publishing one key does to the worker's state once the
// batch is durable.
type outcome struct {
	key   string
	state *publishedState // nil: forget the key (deleted)
	kind  string
	typ   string // "object", "tombstone", or "" (nothing published)
}

// publishBatch builds the records of batch from the caches, publishes them
// and their dead letters, and only then records what was published. A
// batch the publisher does not take is retried until ctx ends: the
// collector contract makes every error a batch-wide one (backpressure, a
// closed publisher), never one record's.
func (ss *session) publishBatch(ctx context.Context, batch []string) {
	defer func() {
		for _, k := range batch {
			ss.queue.Done(k)
		}
		ss.s.m.queueDepth.Set(float64(ss.queue.Len()))
	}()
	var (
		recs     []*record.Record
		dls      []collector.DeadLetter
		outcomes []outcome
	)
	for _, key := range batch {
		rec, out, dl := ss.build(key)
		if dl != nil {
			dls = append(dls, *dl)
		}
		if rec != nil {
			recs = append(recs, rec)
		}
		outcomes = append(outcomes, out)
	}
	if !ss.retry(ctx, "dead letters", func() error { return ss.s.pub.PublishDeadLetters(ctx, dls) }, len(dls)) ||
		!ss.retry(ctx, "records", func() error { return ss.s.pub.Publish(ctx, recs) }, len(recs)) {
		return
	}
	for _, o := range outcomes {
		switch {
		case o.typ == "" && o.state == nil:
			// a dead letter, or a delete of a key never published: nothing to remember
		case o.state == nil:
			delete(ss.published, o.key)
		default:
			ss.published[o.key] = *o.state
		}
		if o.typ != "" {
			ss.s.m.published.WithLabelValues(o.kind, o.typ).Inc()
		}
	}
}

// retry calls f until it returns nil (true) or ctx ends (false).
func (ss *session) retry(ctx context.Context, what string, f func() error, n int) bool {
	if n == 0 {
		return true
	}
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil {
			return true
		}
		reason := "error"
		if errors.Is(err, collector.ErrBackpressure) {
			reason = "backpressure"
		}
		if ctx.Err() != nil {
			ss.log.Warn("objects not published at stop; the next leader publishes their current state", "what", what, "count", n, "err", err)
			return false
		}
		ss.s.m.publishRetries.WithLabelValues(reason).Inc()
		if attempt == 1 || reason == "error" {
			ss.log.Warn("publishing objects failed; retrying", "what", what, "count", n, "err", err)
		}
		t := time.NewTimer(publishBackoff.Wait(attempt))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		}
	}
}

// build decides what one queued key publishes: the cached object's record,
// a tombstone when the cache no longer has it, nothing when it is unchanged
// since it was last published, or a dead letter.
func (ss *session) build(key string) (*record.Record, outcome, *collector.DeadLetter) {
	p := ss.takePending(key)
	seen := p.seen
	if seen.IsZero() {
		seen = time.Now()
	}
	kind, ns, name := splitKey(key)
	out := outcome{key: key, kind: kind}
	ki, known := kinds[kind]
	inf := ss.informers[kind]
	if !known || inf == nil {
		ss.s.m.deadLetters.WithLabelValues(dlUnknownKind).Inc()
		return nil, out, ss.deadLetter(key, nil, dlUnknownKind, fmt.Errorf("kind %q: not collected by this source", kind))
	}
	storeKey := name
	if ns != "" {
		storeKey = ns + "/" + name
	}
	obj, exists, err := inf.GetStore().GetByKey(storeKey)
	if err != nil || !exists {
		return ss.tombstone(key, ki, ns, name, p.gone, seen, out)
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		ss.s.m.deadLetters.WithLabelValues(dlField).Inc()
		return nil, out, ss.deadLetter(key, nil, dlField, fmt.Errorf("%s: not an object: %w", key, err))
	}
	uid, rv := string(m.GetUID()), m.GetResourceVersion()
	prev, had := ss.published[key]
	if had && prev.uid == uid && prev.rv == rv {
		ss.s.m.skipped.WithLabelValues(skipResync).Inc()
		return nil, out, nil
	}
	// The cached object is only read: transform made it the published form.
	raw, err := json.Marshal(obj)
	if err != nil {
		ss.s.m.deadLetters.WithLabelValues(dlEncode).Inc()
		return nil, out, ss.deadLetter(key, nil, dlEncode, fmt.Errorf("%s: encode: %w", key, err))
	}
	st := publishedState{uid: uid, rv: rv, sum: contentHash(raw, rv)}
	if had && prev.uid == uid && prev.sum == st.sum {
		ss.s.m.skipped.WithLabelValues(skipUnchanged).Inc()
		out.state = &st
		return nil, out, nil
	}
	rec, reason, err := objectRecord(ki, m, raw, ss.s.cluster, ss.s.san, seen)
	if err != nil {
		ss.s.m.deadLetters.WithLabelValues(reason).Inc()
		return nil, out, ss.deadLetter(key, raw, reason, fmt.Errorf("%s: %w", key, err))
	}
	rec.InitialList = p.initial
	out.state, out.typ = &st, "object"
	return rec, out, nil
}

// objectRecord builds the redacted record of one object from its published
// form raw (transform applied, then JSON-encoded); List builds its records
// with it too, so a scan judges exactly what the topic would hold. On
// failure reason is the dead-letter reason.
func objectRecord(ki kindInfo, m metav1.Object, raw []byte, cluster record.Cluster, san *redact.Sanitizer,
	seen time.Time) (rec *record.Record, reason string, err error) {
	ref := record.ObjectRef{APIVersion: ki.apiVersion(), Kind: ki.kind, Namespace: m.GetNamespace(), Name: m.GetName(),
		UID: string(m.GetUID()), ResourceVersion: m.GetResourceVersion()}
	if rec, err = record.NewObject(ref, raw, cluster, seen); err != nil {
		return nil, dlField, err
	}
	if err := san.Apply(rec); err != nil {
		// Never publish what could not be redacted; the dead letter is
		// scrubbed by the sanitizer's dead-letter rules.
		return nil, dlRedaction, err
	}
	return rec, "", nil
}

// tombstone builds the tombstone of a key the cache no longer holds, from
// the delete notification or, when that was dropped, from what was last
// published. A key neither names was never published by this session and
// has nothing to delete (its delete notification carried no object).
func (ss *session) tombstone(key string, ki kindInfo, ns, name string, gone *record.ObjectRef, seen time.Time,
	out outcome) (*record.Record, outcome, *collector.DeadLetter) {
	ref := record.ObjectRef{APIVersion: ki.apiVersion(), Kind: ki.kind, Namespace: ns, Name: name}
	switch prev, had := ss.published[key]; {
	case gone != nil && gone.UID != "":
		ref.UID, ref.ResourceVersion = gone.UID, gone.ResourceVersion
	case had:
		ref.UID, ref.ResourceVersion = prev.uid, prev.rv
	default:
		return nil, out, nil
	}
	rec, err := record.NewObjectTombstone(ref, ss.s.cluster, seen)
	if err != nil {
		ss.s.m.deadLetters.WithLabelValues(dlField).Inc()
		return nil, out, ss.deadLetter(key, nil, dlField, fmt.Errorf("%s: tombstone: %w", key, err))
	}
	out.typ = "tombstone"
	return rec, out, nil
}

// deadLetter builds the scrubbed dead letter of one queued key.
func (ss *session) deadLetter(key string, data []byte, reason string, err error) *collector.DeadLetter {
	ss.log.Warn("object dead-lettered", "key", key, "reason", reason, "err", err)
	if data == nil {
		data = []byte(key)
	}
	dl := ss.s.san.DeadLetter(collector.DeadLetter{
		Data: data, Source: SourceName, Origin: key, Offset: -1,
		Reason: reason, Error: err.Error(), Cluster: ss.s.cluster,
	})
	return &dl
}

// contentHash hashes an object's published form without its
// resourceVersion, so that two versions differing only in it compare
// equal. json.Marshal writes metadata before every other field that can
// hold a "resourceVersion" (ownerReferences come after it within metadata,
// and spec/status after metadata), so the first occurrence is the object's.
func contentHash(raw []byte, rv string) uint64 {
	return maphash.Bytes(hashSeed, bytes.Replace(raw, []byte(`"resourceVersion":"`+rv+`"`), nil, 1))
}
