package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// DeadmanRuleID is the rule_id of deadman alerts, for routes and silences.
const DeadmanRuleID = "kubesift-deadman"

// LastSeen reports, per cluster, the time of the newest record kubesift
// holds from it.
type LastSeen func(ctx context.Context) (map[string]time.Time, error)

// ESLastSeen asks Elasticsearch for the newest @timestamp per
// orchestrator.cluster.name across the record data streams (one terms
// aggregation with a max; missing streams are ignored).
func ESLastSeen(es *elasticsearch.Client, indices []string) LastSeen {
	return func(ctx context.Context) (map[string]time.Time, error) {
		q := []byte(`{"size":0,"aggs":{"c":{"terms":{"field":"orchestrator.cluster.name","size":10000},"aggs":{"last":{"max":{"field":"@timestamp"}}}}}}`)
		esc := make([]string, len(indices))
		for i, ix := range indices {
			esc[i] = url.PathEscape(ix)
		}
		path := "/" + strings.Join(esc, ",") + "/_search?ignore_unavailable=true&allow_no_indices=true"
		var body []byte
		err := sink.Do(ctx, backoff.Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Attempts: 3}, func(ctx context.Context) (bool, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, path, bytes.NewReader(q))
			if err != nil {
				return false, err
			}
			req.Header.Set("Content-Type", "application/json")
			res, err := es.Perform(req)
			if err != nil {
				return sink.Retryable(0, err), fmt.Errorf("deadman query: %w", stripURL(err))
			}
			defer res.Body.Close()
			body, _ = io.ReadAll(io.LimitReader(res.Body, 16<<20))
			if res.StatusCode < 200 || res.StatusCode > 299 {
				return sink.Retryable(res.StatusCode, nil), &sink.StatusError{Op: "deadman query", StatusCode: res.StatusCode, Detail: elasticsearch.ErrorType(body)}
			}
			return false, nil
		}, nil)
		if err != nil {
			return nil, err
		}
		var r struct {
			Aggregations struct {
				C struct {
					Buckets []struct {
						Key  string `json:"key"`
						Last struct {
							Value *float64 `json:"value"`
						} `json:"last"`
					} `json:"buckets"`
				} `json:"c"`
			} `json:"aggregations"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return nil, fmt.Errorf("deadman query: decode answer: %w", err)
		}
		out := map[string]time.Time{}
		for _, b := range r.Aggregations.C.Buckets {
			if b.Last.Value != nil {
				out[b.Key] = time.UnixMilli(int64(*b.Last.Value)).UTC()
			}
		}
		return out, nil
	}
}

// Deadman raises an alert (rule_id kubesift-deadman) for every cluster that
// sent nothing for its threshold: the clusters LastSeen knows, plus the
// ones configured by name (which count from the notifier's start if they
// were never seen, so a fresh notifier does not page at once).
//
// The alert's ID is the cluster and the time it was last seen, so while a
// cluster stays silent every check yields the same alert — one
// notification — until its group closes after repeat_interval, when the
// next check notifies again (a reminder). Deadman alerts go through the
// routing tree, silences and inhibition like any other.
type Deadman struct {
	Seen      LastSeen
	Threshold time.Duration
	// Clusters overrides Threshold per cluster.
	Clusters   map[string]time.Duration
	Severity   rules.Severity
	Dispatcher *Dispatcher
	Now        func() time.Time
	Log        *slog.Logger

	started time.Time
}

// Check runs one check and returns the alerts it raised.
func (m *Deadman) Check(ctx context.Context) ([]rules.Alert, error) {
	if m.Now == nil {
		m.Now = time.Now
	}
	now := m.Now()
	if m.started.IsZero() {
		m.started = now
	}
	last, err := m.Seen(ctx)
	if err != nil {
		return nil, err
	}
	clusters := map[string]bool{}
	for c := range last {
		clusters[c] = true
	}
	for c := range m.Clusters {
		clusters[c] = true
	}
	names := make([]string, 0, len(clusters))
	for c := range clusters {
		names = append(names, c)
	}
	sort.Strings(names)
	var out []rules.Alert
	for _, c := range names {
		th, ok := m.Clusters[c]
		if !ok {
			th = m.Threshold
		}
		seen, ok := last[c]
		since := "since " + seen.Format(time.RFC3339)
		if !ok {
			seen, since = m.started, "since this notifier started at "+m.started.Format(time.RFC3339)+" (never seen)"
		}
		if now.Sub(seen) <= th {
			continue
		}
		a := rules.Alert{
			ID: DeadmanRuleID + ":" + c + ":" + strconv.FormatInt(seen.Unix(), 10), RuleID: DeadmanRuleID,
			Title:    "No data from cluster " + c,
			Severity: m.Severity, Tags: []string{"deadman"}, Cluster: c, Time: now.UTC(),
			Message: fmt.Sprintf("kubesift has received no record from cluster %s %s (threshold %s): its collector may be down or cut off",
				c, since, th),
		}
		out = append(out, a)
		if m.Dispatcher != nil {
			if err := m.Dispatcher.Add(ctx, a, nil); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// Run checks every interval until ctx ends; a failed check is logged (and
// is not an alert: Elasticsearch being away is not the cluster's silence).
func (m *Deadman) Run(ctx context.Context, interval time.Duration) {
	log := m.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := m.Check(ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("notify: deadman check failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
