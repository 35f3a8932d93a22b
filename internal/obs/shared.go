package obs

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers every collector with reg, or none: on the first
// refusal (a duplicate name, an invalid descriptor) it unregisters those
// it registered and returns the refusal, so a component whose construction
// fails leaves no series behind to refuse the next attempt. A nil reg
// registers nothing: a component built without a registry keeps its
// metrics private.
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}

// RegisterShared registers c, or returns the identical collector another
// component registered first: several sources of one process count into the
// same series (e.g. kubesift_collector_received_total{source=…}).
func RegisterShared(reg prometheus.Registerer, c *prometheus.CounterVec) (*prometheus.CounterVec, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if ex, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
			return ex, nil
		}
	}
	return nil, err
}

// LogLimiter logs each kind of repeated warning at most once per interval, so
// a peer retrying every second (an API server, a broken line) does not flood
// the log; the metrics count every occurrence. The zero value is ready.
type LogLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// LogInterval is how often one kind of warning may be logged.
const LogInterval = 10 * time.Second

// Warn logs msg unless a warning with the same key was logged within
// LogInterval.
func (l *LogLimiter) Warn(log *slog.Logger, key, msg string, args ...any) {
	l.mu.Lock()
	now := time.Now()
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	if t, ok := l.last[key]; ok && now.Sub(t) < LogInterval {
		l.mu.Unlock()
		return
	}
	l.last[key] = now
	l.mu.Unlock()
	log.Warn(msg, args...)
}
