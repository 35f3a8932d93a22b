package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// ESStates is the StateSink that records delivery states in the alerts
// index: it updates kubesift.delivery.{state,reason,updated} of the alert's
// document (_id = alert ID) with partial-document bulk updates.
//
// Alerting must not depend on Elasticsearch being up, so AlertState never
// blocks: updates are coalesced per alert (the latest state wins) in a
// bounded map flushed every interval, and when the map is full an update is
// dropped — deliberately, counted in kubesift_notify_state_updates_total
// {outcome="dropped"} and logged. A document that does not exist yet (the
// processor indexes it concurrently) is retried at the next flushes, a few
// times, before it is dropped as missing.
type ESStates struct {
	es       *elasticsearch.Client
	index    string
	max      int
	interval time.Duration
	log      *slog.Logger
	updates  *prometheus.CounterVec
	retry    backoff.Policy

	mu      sync.Mutex
	pending map[string]stateUpdate
	lastLog time.Time
}

type stateUpdate struct {
	state    State
	reason   string
	at       time.Time
	attempts int // flushes that found no document
}

// Outcomes of kubesift_notify_state_updates_total.
const (
	updateUpdated  = "updated"  // the alert document carries the state
	updateMissing  = "missing"  // no alert document after missingAttempts flushes
	updateRejected = "rejected" // Elasticsearch refused the update
	updateDropped  = "dropped"  // the pending map was full
)

// missingAttempts is how many flushes an update waits for its document.
const missingAttempts = 5

// NewESStates builds the sink; call Run to flush. maxPending bounds the
// coalescing map.
func NewESStates(es *elasticsearch.Client, index string, maxPending int, interval time.Duration, log *slog.Logger, reg prometheus.Registerer) (*ESStates, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &ESStates{es: es, index: index, max: maxPending, interval: interval, log: log, pending: map[string]stateUpdate{},
		retry: backoff.Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Attempts: 3},
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubesift_notify_state_updates_total",
			Help: "Delivery-state updates of alert documents, by outcome (updated, missing, rejected, dropped).",
		}, []string{"outcome"})}
	if reg != nil {
		if err := reg.Register(s.updates); err != nil {
			return nil, fmt.Errorf("notify state metrics: %w", err)
		}
	}
	for _, o := range []string{updateUpdated, updateMissing, updateRejected, updateDropped} {
		s.updates.WithLabelValues(o)
	}
	return s, nil
}

// AlertState implements StateSink; it never blocks.
func (s *ESStates) AlertState(id string, st State, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pending[id]; !ok && len(s.pending) >= s.max {
		s.updates.WithLabelValues(updateDropped).Inc()
		if time.Since(s.lastLog) > 10*time.Second {
			s.lastLog = time.Now()
			s.log.Warn("notify: delivery-state queue full (Elasticsearch slow or down?); state updates dropped", "max", s.max)
		}
		return
	}
	s.pending[id] = stateUpdate{state: st, reason: reason, at: time.Now().UTC()}
}

// Run flushes every interval until ctx ends, then once more (bounded by a
// short grace).
func (s *ESStates) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.Flush(fctx)
			cancel()
			return
		case <-t.C:
			if err := s.Flush(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("notify: delivery-state flush failed; retried at the next interval", "err", err)
			}
		}
	}
}

// maxBulkItems bounds one bulk request.
const maxBulkItems = 1000

// Flush sends the pending updates. On a request failure they are put back
// (unless a newer state arrived meanwhile).
func (s *ESStates) Flush(ctx context.Context) error {
	s.mu.Lock()
	batch := make(map[string]stateUpdate, min(len(s.pending), maxBulkItems))
	for id, u := range s.pending {
		if len(batch) == maxBulkItems {
			break
		}
		batch[id] = u
		delete(s.pending, id)
	}
	s.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	ids := make([]string, 0, len(batch))
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	for id, u := range batch {
		ids = append(ids, id)
		_ = enc.Encode(map[string]any{"update": map[string]any{"_index": s.index, "_id": id, "retry_on_conflict": 3}})
		_ = enc.Encode(map[string]any{"doc": map[string]any{"kubesift": map[string]any{"delivery": map[string]any{
			"state": string(u.state), "reason": u.reason, "updated": u.at.Format(time.RFC3339Nano)}}}})
	}
	var resp []byte
	err := sink.Do(ctx, s.retry, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "/_bulk", bytes.NewReader(body.Bytes()))
		if err != nil {
			return false, err
		}
		req.Header.Set("Content-Type", "application/x-ndjson")
		res, err := s.es.Perform(req)
		if err != nil {
			return sink.Retryable(0, err), fmt.Errorf("state bulk: %w", stripURL(err))
		}
		defer res.Body.Close()
		resp, _ = io.ReadAll(io.LimitReader(res.Body, 64<<20))
		if res.StatusCode < 200 || res.StatusCode > 299 {
			return sink.Retryable(res.StatusCode, nil), &sink.StatusError{Op: "state bulk", StatusCode: res.StatusCode, Detail: elasticsearch.ErrorType(resp)}
		}
		return false, nil
	}, nil)
	if err != nil {
		s.requeue(batch, ids, false)
		return err
	}
	var br struct {
		Items []map[string]struct {
			ID     string `json:"_id"`
			Status int    `json:"status"`
			Error  struct {
				Type string `json:"type"`
			} `json:"error"`
		} `json:"items"`
	}
	if err := json.Unmarshal(resp, &br); err != nil {
		return fmt.Errorf("state bulk: decode answer: %w", err)
	}
	var missing []string
	for _, item := range br.Items {
		for _, r := range item {
			switch {
			case r.Status >= 200 && r.Status < 300:
				s.updates.WithLabelValues(updateUpdated).Inc()
			case r.Status == http.StatusNotFound:
				missing = append(missing, r.ID)
			case sink.Retryable(r.Status, nil):
				s.requeue(batch, []string{r.ID}, false)
			default:
				s.updates.WithLabelValues(updateRejected).Inc()
				s.log.Warn("notify: delivery-state update rejected", "alert", r.ID, "status", r.Status, "type", r.Error.Type)
			}
		}
	}
	s.requeue(batch, missing, true)
	return nil
}

// requeue puts updates back unless a newer one is pending; missing ones
// count an attempt and are dropped after missingAttempts.
func (s *ESStates) requeue(batch map[string]stateUpdate, ids []string, missing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		u := batch[id]
		if missing {
			if u.attempts++; u.attempts >= missingAttempts {
				s.updates.WithLabelValues(updateMissing).Inc()
				continue
			}
		}
		if _, newer := s.pending[id]; newer {
			continue
		}
		if len(s.pending) >= s.max {
			s.updates.WithLabelValues(updateDropped).Inc()
			continue
		}
		s.pending[id] = u
	}
}

// Pending is the number of updates waiting (tests, metrics).
func (s *ESStates) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}
