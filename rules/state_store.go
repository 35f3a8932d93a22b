package rules

import (
	"fmt"
	"time"
)

// store is what a Scope needs of a stateful rule's memory beyond observe:
// what changed, how to encode and restore a group, and expiry.
type store interface {
	kind() byte
	// drain expires groups out of their window as of watermark, evicts
	// past maxBytes (0: no bound), and emits every group touched since the
	// last drain: its encoded value, or nil and why it is gone.
	drain(watermark time.Time, maxBytes int64, emit func(key string, val []byte, reason string))
	// restore sets group key from a changelog payload; size is the
	// entry's encoded size.
	restore(key string, payload []byte, size int64) error
	// forget drops group key (a tombstone read while restoring).
	forget(key string)
}

// groupCodec is implemented by each state kind for its group values.
type groupCodec[V any] interface {
	appendValue(b []byte, v V) []byte
	decodeValue(d *decoder) V
	newest(v V) time.Time
}

// lruStore is the store of one state kind, over its lru.
type lruStore[V any] struct {
	l       *lru[V]
	c       groupCodec[V]
	k       byte
	fp      uint64
	horizon time.Duration
	swept   time.Time // watermark of the last expiry sweep
	buf     []byte
}

// storeOf turns on change tracking in st, the state of a rule whose
// stateful definition has fingerprint fp, and returns its store. horizonCap
// caps a new_term rule's memory (0: its lookback).
func storeOf(st state, fp uint64, horizonCap time.Duration) store {
	switch s := st.(type) {
	case *thresholdState:
		return newLRUStore(s.lru, groupCodec[*ring](s), kindThreshold, fp, s.window+s.cooldown)
	case *distinctState:
		return newLRUStore(s.lru, groupCodec[*distinctGroup](s), kindDistinct, fp, s.window+s.cooldown)
	case *sequenceState:
		return newLRUStore(s.lru, groupCodec[*seqProgress](s), kindSequence, fp, s.within)
	case *newTermState:
		h := s.lookback
		if horizonCap > 0 && horizonCap < h {
			h = horizonCap
		}
		return newLRUStore(s.lru, groupCodec[time.Time](s), kindNewTerm, fp, h)
	}
	panic(fmt.Sprintf("rules: no store for state %T", st))
}

func newLRUStore[V any](l *lru[V], c groupCodec[V], k byte, fp uint64, horizon time.Duration) *lruStore[V] {
	l.mu.Lock()
	l.dirty = map[string]string{}
	l.mu.Unlock()
	return &lruStore[V]{l: l, c: c, k: k, fp: fp, horizon: horizon}
}

func (s *lruStore[V]) kind() byte { return s.k }

func (s *lruStore[V]) drain(watermark time.Time, maxBytes int64, emit func(string, []byte, string)) {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	l := s.l
	s.expire(watermark)
	for key, reason := range l.dirty {
		delete(l.dirty, key)
		e, ok := l.m[key]
		if !ok {
			if reason == "" {
				reason = ReasonDone
			}
			emit(key, nil, reason)
			continue
		}
		ent := e.Value.(*lruEntry[V])
		s.buf = appendHeader(s.buf[:0], valueHeader{kind: s.k, fp: s.fp})
		s.buf = s.c.appendValue(s.buf, ent.val)
		val := append([]byte(nil), s.buf...)
		size := int64(len(key) + len(val))
		l.bytes += size - ent.size
		ent.size = size
		emit(key, val, ReasonUpdate)
	}
	for maxBytes > 0 && l.bytes > maxBytes && l.order.Len() > 0 {
		key := l.order.Back().Value.(*lruEntry[V]).key
		l.evictOldest()
		delete(l.dirty, key)
		emit(key, nil, ReasonEvicted)
	}
}

// expire removes the groups whose newest time is more than the horizon
// before watermark, at most once per quarter horizon of event time (a sweep
// reads every group).
func (s *lruStore[V]) expire(watermark time.Time) {
	if s.horizon <= 0 || watermark.Sub(s.swept) < s.horizon/4 {
		return
	}
	s.swept = watermark
	cutoff := watermark.Add(-s.horizon)
	for e := s.l.order.Back(); e != nil; {
		prev := e.Prev()
		ent := e.Value.(*lruEntry[V])
		if s.c.newest(ent.val).Before(cutoff) {
			s.l.remove(ent.key)
			s.l.dirty[ent.key] = ReasonExpired
		}
		e = prev
	}
}

func (s *lruStore[V]) restore(key string, payload []byte, size int64) error {
	d := decoder{b: payload}
	v := s.c.decodeValue(&d)
	if err := d.end(); err != nil {
		return err
	}
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	l := s.l
	if e, ok := l.m[key]; ok {
		ent := e.Value.(*lruEntry[V])
		l.order.MoveToFront(e)
		l.bytes += size - ent.size
		ent.val, ent.size = v, size
		return nil
	}
	if len(l.m) >= l.max {
		l.evictOldest()
	}
	ent := &lruEntry[V]{key: key, val: v, size: size}
	l.m[key] = l.order.PushFront(ent)
	l.bytes += size
	return nil
}

func (s *lruStore[V]) forget(key string) {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	if e, ok := s.l.m[key]; ok {
		s.l.order.Remove(e)
		delete(s.l.m, key)
		s.l.bytes -= e.Value.(*lruEntry[V]).size
	}
}
