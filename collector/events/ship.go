package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/record"
)

// Shipping: the worker batches queued versions, builds and redacts their
// records, publishes them and acknowledges them to the tracker.

// work batches queued versions and ships them until the queue is closed and
// drained, or ctx ends (then the rest stays unshipped, above the watermark).
func (s *session) work(ctx context.Context) {
	maxRecords, maxWait := s.c.cfg.Batch.MaxRecords, s.c.cfg.Batch.MaxWait
	batch := make([]*item, 0, maxRecords)
	for {
		it, ok := <-s.queue
		if !ok {
			return
		}
		s.c.m.depth.Add(-1)
		batch = append(batch[:0], it)
		timer := time.NewTimer(maxWait)
	fill:
		for len(batch) < maxRecords {
			select {
			case it, ok := <-s.queue:
				if !ok {
					break fill
				}
				s.c.m.depth.Add(-1)
				batch = append(batch, it)
			case <-timer.C:
				break fill
			}
		}
		timer.Stop()
		if !s.ship(ctx, batch) {
			n := len(batch)
			for range s.queue {
				s.c.m.depth.Add(-1)
				n++
			}
			s.c.m.unshipped.Add(float64(n))
			s.log.Warn("stopped before these Events were shipped; the next leader ships them (they are above the watermark)", "events", n)
			return
		}
	}
}

// ship builds the batch's records and publishes them; it returns false only
// when ctx ended first.
func (s *session) ship(ctx context.Context, batch []*item) bool {
	recs := make([]*record.Record, 0, len(batch))
	recItems := make([]*item, 0, len(batch))
	type dead struct {
		it  *item
		dl  collector.DeadLetter
		why string
	}
	var deads []dead
	for _, it := range batch {
		rec, err := s.build(it)
		reason := record.ReasonField
		if err == nil {
			// Never publish an Event whose message could not be redacted.
			if err = s.c.sanitizer().Apply(rec); err != nil {
				reason = collector.ReasonRedaction
			}
		}
		if err != nil {
			data, _ := json.Marshal(it.obj)
			deads = append(deads, dead{it: it, dl: s.deadLetter(data, reason, err), why: "build"})
			continue
		}
		recs = append(recs, rec)
		recItems = append(recItems, it)
	}
	if len(recs) > 0 {
		start := time.Now()
		rejected, ok := s.publish(ctx, recs)
		if !ok {
			return false
		}
		s.c.m.publishDuration.Observe(time.Since(start).Seconds())
		s.c.m.batchRecords.Observe(float64(len(recs) - len(rejected)))
		for _, i := range rejected {
			deads = append(deads, dead{it: recItems[i], dl: s.deadLetter(recs[i].Object, "publish_rejected", errors.New("refused by the publisher")), why: "publish_rejected"})
		}
		s.c.m.shipped.Add(float64(len(recs) - len(rejected)))
	}
	for _, d := range deads {
		if !s.publishDeadLetter(ctx, d.dl) {
			return false
		}
		s.c.m.deadLetters.Inc()
		if d.why == "publish_rejected" {
			s.c.m.dropped.WithLabelValues("publish_rejected").Inc()
		}
	}
	acks := make([]ackItem, len(batch))
	for i, it := range batch {
		acks[i] = ackItem{seq: it.seq, uid: it.uid, rv: it.rv, eventTime: eventTime(it.obj)}
	}
	s.tr.ack(acks)
	if t := s.tr.lastEventTime(); !t.IsZero() {
		s.c.m.lastEventTime.WithLabelValues(s.cluster.Name).Set(float64(t.UnixNano()) / 1e9)
	}
	return true
}

// build turns a queued version into a record: a copy of the cached object
// (never the object itself) with its type set and, for Events about Pods,
// the enrichment annotations.
func (s *session) build(it *item) (*record.Record, error) {
	switch ev := it.obj.(type) {
	case *eventsv1.Event:
		cp := ev.DeepCopy()
		cp.APIVersion, cp.Kind = record.APIEventsV1, "Event"
		if s.pods != nil && isPod(cp.Regarding) {
			addAnnotations(&cp.Annotations, s.pods.annotations(nsOr(cp.Regarding.Namespace, cp.Namespace), cp.Regarding.Name, cp.Regarding.UID))
		}
		return record.NewEvent(cp, nil, s.cluster, it.received)
	case *corev1.Event:
		cp := ev.DeepCopy()
		cp.APIVersion, cp.Kind = record.APICoreV1, "Event"
		if s.pods != nil && isPod(cp.InvolvedObject) {
			addAnnotations(&cp.Annotations, s.pods.annotations(nsOr(cp.InvolvedObject.Namespace, cp.Namespace), cp.InvolvedObject.Name, cp.InvolvedObject.UID))
		}
		return record.NewCoreEvent(cp, nil, s.cluster, it.received)
	}
	return nil, fmt.Errorf("unexpected object %T", it.obj)
}

func isPod(ref corev1.ObjectReference) bool {
	return ref.Kind == "Pod" && (ref.APIVersion == "v1" || ref.APIVersion == "") && ref.Name != ""
}

func nsOr(ns, fallback string) string {
	if ns != "" {
		return ns
	}
	return fallback
}

func (s *session) deadLetter(data []byte, reason string, err error) collector.DeadLetter {
	return s.c.san.DeadLetter(collector.DeadLetter{
		Data: data, Source: Source, Origin: "informer", Offset: -1,
		Reason: reason, Error: err.Error(), Cluster: s.cluster,
	})
}
