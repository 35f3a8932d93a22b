package events

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The watermark during a session: loaded at its start, written every
// watermark.interval while it advances and once more at its end (the stored
// form and the Lease are in watermark.go).

// loadWatermark reads the stored watermark and decides whether to resume.
func (s *session) loadWatermark(ctx context.Context) error {
	if s.store == nil {
		return nil
	}
	w, found, err := s.store.load(ctx)
	var perr error
	if err != nil {
		if errors.Is(err, context.Canceled) || ctx.Err() != nil {
			return nil
		}
		// A malformed annotation is reported and replaced; an API error is
		// retried by the caller (shipping without the watermark would
		// re-ship the backlog up to max_age: safe, but avoidable).
		if !errors.Is(err, errBadWatermark) {
			return fmt.Errorf("load watermark: %w", err)
		}
		perr = err
	}
	switch {
	case perr != nil:
		s.log.Warn("stored watermark is unreadable; first-start rules apply", "err", perr)
		s.c.m.watermarkIgnored.WithLabelValues(ignoredInvalid).Inc()
	case !found:
		s.log.Info("no watermark yet: first start, skipping Events older than max_age", "max_age", s.c.cfg.MaxAge)
	case w.ClusterUID != "" && s.cluster.UID != "" && w.ClusterUID != s.cluster.UID:
		s.log.Warn("stored watermark belongs to another cluster; first-start rules apply", "watermark_cluster_uid", w.ClusterUID, "cluster_uid", s.cluster.UID)
		s.c.m.watermarkIgnored.WithLabelValues(ignoredCluster).Inc()
	case w.Scope != s.c.scope:
		s.log.Warn("namespaces or selectors changed since the watermark was written; first-start rules apply", "watermark_scope", w.Scope, "scope", s.c.scope)
		s.c.m.watermarkIgnored.WithLabelValues(ignoredScope).Inc()
	default:
		s.resumeRV, s.loaded, s.written = w.ResourceVersion, w, w.ResourceVersion
		s.c.m.watermarkRV.Set(float64(w.ResourceVersion))
		if !w.EventTime.IsZero() {
			s.c.m.watermarkTime.Set(float64(w.EventTime.UnixNano()) / 1e9)
		}
		s.log.Info("resuming from the watermark", "watermark_rv", w.ResourceVersion, "watermark_event_time", w.EventTime, "written_by", w.Writer, "written_at", w.Updated)
	}
	return nil
}

// checkpoints writes the watermark every interval while it advances.
func (s *session) checkpoints(ctx context.Context) {
	if s.store == nil {
		return
	}
	t := time.NewTicker(s.c.cfg.Watermark.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.checkpoint(ctx)
		}
	}
}

// checkpoint computes the watermark and stores it if it advanced.
func (s *session) checkpoint(ctx context.Context) {
	if s.store == nil {
		return
	}
	w, et, ok := s.tr.candidate()
	if !ok || w <= s.written {
		return
	}
	if s.loaded.EventTime.After(et) {
		et = s.loaded.EventTime
	}
	wm := Watermark{ResourceVersion: w, EventTime: et, ClusterUID: s.cluster.UID, Scope: s.c.scope, Writer: s.c.identity, Updated: s.c.now()}
	if _, err := s.store.save(ctx, wm); err != nil {
		s.c.m.watermarkWrites.WithLabelValues(writeError).Inc()
		s.log.Warn("writing the watermark failed; a restart would re-ship more than needed", "err", err)
		return
	}
	s.c.m.watermarkWrites.WithLabelValues(writeOK).Inc()
	s.written = w
	s.c.m.watermarkRV.Set(float64(w))
	if !et.IsZero() {
		s.c.m.watermarkTime.Set(float64(et.UnixNano()) / 1e9)
	}
}
