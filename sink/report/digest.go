package report

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
)

// Lengths of a digest's lists: a daily message is read in a minute, and
// the lists bound its size whatever the store holds.
const (
	DigestTopRules    = 10
	DigestTopReasons  = 10
	DigestTopBindings = 10
	// MaxDigestClusters bounds the clusters Clusters finds.
	MaxDigestClusters = 100
)

// UnusedBindingCheck is the posture check that reports a binding which
// allowed no request within the RBAC usage window. The digest reads its
// findings from the findings index like any other check's, so it names
// unused bindings wherever the RBAC usage checks run and reads 0 where
// they do not.
const UnusedBindingCheck = "posture-rbac-unused-binding"

// Digest is one cluster's figures over a window: what the daily digest
// says and `kubesift report --digest` prints.
type Digest struct {
	Cluster string    `json:"cluster"`
	From    time.Time `json:"from,omitzero"`
	To      time.Time `json:"to"`

	// Score is nil when the cluster has no cluster-scope posture score
	// before To.
	Score *ScoreChange `json:"posture_score,omitempty"`
	// FindingsOpened counts transitions to open or reopened within the
	// window, FindingsResolved those to resolved; OpenFindings the
	// findings open or reopened now.
	FindingsOpened   int64 `json:"findings_opened"`
	FindingsResolved int64 `json:"findings_resolved"`
	OpenFindings     int64 `json:"open_findings"`

	// UnusedBindings counts the open or reopened UnusedBindingCheck
	// findings now (not windowed, like OpenFindings); UnusedBindingsOpened
	// those of them opened or reopened within the window; TopUnused names
	// DigestTopBindings of them, unused the longest first.
	UnusedBindings       int64           `json:"unused_bindings"`
	UnusedBindingsOpened int64           `json:"unused_bindings_opened"`
	TopUnused            []DigestBinding `json:"top_unused_bindings"`

	Alerts     int64        `json:"alerts"`
	Rules      []DigestRule `json:"top_rules"`
	OtherRules int64        `json:"other_rules_alerts"`

	// Warnings counts Events of type Warning, by reason.
	Warnings      int64          `json:"event_warnings"`
	Reasons       []DigestReason `json:"warnings_by_reason"`
	OtherWarnings int64          `json:"other_reasons_warnings"`

	// AuditRecords and Events are the records indexed in the window;
	// Trimmed those of them indexed with part of their content left out
	// (kubesift.record.truncated, body_dropped or dropped_fields).
	AuditRecords int64 `json:"audit_records"`
	Events       int64 `json:"events"`
	Trimmed      int64 `json:"records_trimmed"`
	// DeadLetters are the cluster's records and alerts that were
	// dead-lettered in the window instead of indexed. Nil when the digest
	// was made without reading Kafka (report --digest without --kafka).
	DeadLetters *DeadLetters `json:"dead_letters,omitempty"`
}

// DigestRule is one rule's alerts in a digest.
type DigestRule struct {
	ID       string         `json:"id"`
	Name     string         `json:"name,omitempty"`
	Severity rules.Severity `json:"severity"` // the highest of its alerts
	Alerts   int64          `json:"alerts"`
}

// DigestBinding is a binding an open UnusedBindingCheck finding names.
type DigestBinding struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Since is when the finding was last opened: the binding had then
	// allowed no request for the whole window.
	Since time.Time `json:"since"`
}

// DigestReason is one reason's Warning Events in a digest.
type DigestReason struct {
	Reason   string `json:"reason"`
	Warnings int64  `json:"warnings"`
}

// ScoreChange is a cluster's posture score at the end of the window and
// its change since the start: Start is the latest score before From, or
// the first within the window when there is none before.
type ScoreChange struct {
	Percent float64   `json:"percent"`
	Passed  int64     `json:"passed"`
	Failed  int64     `json:"failed"`
	At      time.Time `json:"at"`
	// Start is nil when the cluster's first score is its latest.
	Start   *float64  `json:"start_percent,omitempty"`
	StartAt time.Time `json:"start_at,omitzero"`
}

// Change is Percent minus Start (0 without a start).
func (s *ScoreChange) Change() float64 {
	if s == nil || s.Start == nil {
		return 0
	}
	return s.Percent - *s.Start
}

// clusterField is where every kubesift document names its cluster.
const clusterField = "orchestrator.cluster.name"

// Clusters returns the names of the clusters with alerts, audit records,
// Events or posture scores in w, sorted, at most MaxDigestClusters (more is
// said in the error-free second result: how many were left out).
func (e *ES) Clusters(ctx context.Context, w Window) (names []string, leftOut int, err error) {
	seen := map[string]bool{}
	for _, idx := range []string{e.indices.Alerts, e.indices.Audit, e.indices.Events, e.indices.Scores} {
		var res struct {
			Aggregations struct {
				C terms[bucket] `json:"c"`
			} `json:"aggregations"`
		}
		q := map[string]any{"size": 0, "query": windowQuery(w), "aggs": map[string]any{
			"c": map[string]any{"terms": map[string]any{"field": clusterField, "size": MaxDigestClusters + 1, "order": map[string]any{"_key": "asc"}}},
		}}
		if _, err := e.search(ctx, idx, q, &res); err != nil {
			return nil, 0, err
		}
		for _, b := range res.Aggregations.C.Buckets {
			if n := b.str(); n != "" {
				seen[n] = true
			}
		}
	}
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) > MaxDigestClusters {
		leftOut, names = len(names)-MaxDigestClusters, names[:MaxDigestClusters]
	}
	return names, leftOut, nil
}

// Digests are the digests of clusters in w, or with none named of the
// clusters found (Clusters; leftOut as its).
func (e *ES) Digests(ctx context.Context, clusters []string, w Window) (ds []*Digest, leftOut int, err error) {
	if len(clusters) == 0 {
		if clusters, leftOut, err = e.Clusters(ctx, w); err != nil {
			return nil, 0, err
		}
	}
	ds = make([]*Digest, 0, len(clusters))
	for _, c := range clusters {
		d, err := e.Digest(ctx, c, w)
		if err != nil {
			return nil, 0, err
		}
		ds = append(ds, d)
	}
	return ds, leftOut, nil
}

// Digest asks for cluster's figures in w, one part at a time.
func (e *ES) Digest(ctx context.Context, cluster string, w Window) (*Digest, error) {
	d := &Digest{Cluster: cluster, From: w.From.UTC(), To: w.To.UTC()}
	for _, part := range []func(context.Context, *Digest, Window) error{
		e.digestScore, e.digestFindings, e.digestUnused, e.digestAlerts, e.digestWarnings, e.digestRecords,
	} {
		if err := part(ctx, d, w); err != nil {
			return nil, fmt.Errorf("digest of %s: %w", cluster, err)
		}
	}
	return d, nil
}

// inCluster is windowQuery(w) for the documents of cluster, with extra
// filters.
func inCluster(cluster string, w Window, extra ...map[string]any) map[string]any {
	f := []any{windowQuery(w), map[string]any{"term": map[string]any{clusterField: cluster}}}
	for _, x := range extra {
		f = append(f, x)
	}
	return map[string]any{"bool": map[string]any{"filter": f}}
}

// digestScore reads the latest cluster score before To and the start
// score (see ScoreChange) in one search.
func (e *ES) digestScore(ctx context.Context, d *Digest, w Window) error {
	latest := func(order string) map[string]any {
		return map[string]any{"top_hits": map[string]any{"size": 1, "sort": []any{map[string]any{"@timestamp": order}},
			"_source": []string{"@timestamp", "kubesift.posture_score"}}}
	}
	before := Window{To: w.From}
	if w.From.IsZero() {
		before.To = time.Unix(0, 0) // no start bound: nothing lies before it
	}
	q := map[string]any{"size": 0, "query": inCluster(d.Cluster, Window{To: w.To},
		map[string]any{"term": map[string]any{"kubesift.posture_score.scope": "cluster"}}),
		"aggs": map[string]any{
			"last":   latest("desc"),
			"before": map[string]any{"filter": windowQuery(before), "aggs": map[string]any{"h": latest("desc")}},
			"within": map[string]any{"filter": windowQuery(Window{From: w.From}), "aggs": map[string]any{"h": latest("asc")}},
		}}
	type hits struct {
		Hits struct {
			Hits []struct {
				Source scoreDoc `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	var res struct {
		Aggregations struct {
			Last   hits `json:"last"`
			Before struct {
				H hits `json:"h"`
			} `json:"before"`
			Within struct {
				H hits `json:"h"`
			} `json:"within"`
		} `json:"aggregations"`
	}
	if _, err := e.search(ctx, e.indices.Scores, q, &res); err != nil {
		return err
	}
	a := &res.Aggregations
	if len(a.Last.Hits.Hits) == 0 {
		return nil
	}
	last := a.Last.Hits.Hits[0].Source
	ps := last.Kubesift.PostureScore
	d.Score = &ScoreChange{Percent: ps.Percent, Passed: ps.Passed, Failed: ps.Failed, At: last.Timestamp.UTC()}
	start := a.Before.H.Hits.Hits
	if len(start) == 0 {
		start = a.Within.H.Hits.Hits
	}
	if len(start) > 0 && !start[0].Source.Timestamp.Equal(last.Timestamp) {
		p := start[0].Source.Kubesift.PostureScore.Percent
		d.Score.Start, d.Score.StartAt = &p, start[0].Source.Timestamp.UTC()
	}
	return nil
}

// Finding fields the digest reads.
const (
	stateField = "kubesift.finding.state"
	checkField = "kubesift.finding.check_id"
)

// openState selects findings open or reopened.
var openState = map[string]any{"terms": map[string]any{stateField: []string{"open", "reopened"}}}

// digestFindings counts the window's transitions by state (of every
// check, and of UnusedBindingCheck) and the findings open now.
func (e *ES) digestFindings(ctx context.Context, d *Digest, w Window) error {
	byState := map[string]any{"terms": map[string]any{"field": stateField, "size": 10}}
	var tr struct {
		Aggregations struct {
			S      terms[bucket] `json:"s"`
			Unused struct {
				S terms[bucket] `json:"s"`
			} `json:"unused"`
		} `json:"aggregations"`
	}
	q := map[string]any{"size": 0, "query": inCluster(d.Cluster, w), "aggs": map[string]any{
		"s": byState,
		"unused": map[string]any{"filter": map[string]any{"term": map[string]any{checkField: UnusedBindingCheck}},
			"aggs": map[string]any{"s": byState}},
	}}
	if _, err := e.search(ctx, e.indices.Transitions, q, &tr); err != nil {
		return err
	}
	d.FindingsOpened, d.FindingsResolved = countStates(tr.Aggregations.S)
	d.UnusedBindingsOpened, _ = countStates(tr.Aggregations.Unused.S)
	var open hitsTotal
	q = map[string]any{"size": 0, "track_total_hits": true, "query": inCluster(d.Cluster, Window{}, openState)}
	if _, err := e.search(ctx, e.indices.Findings, q, &open); err != nil {
		return err
	}
	d.OpenFindings = open.Hits.Total.Value
	return nil
}

// countStates sums transitions by state: to open or reopened, and to
// resolved.
func countStates(s terms[bucket]) (opened, resolved int64) {
	for _, b := range s.Buckets {
		switch b.str() {
		case "open", "reopened":
			opened += b.DocCount
		case "resolved":
			resolved += b.DocCount
		}
	}
	return opened, resolved
}

// digestUnused counts the open UnusedBindingCheck findings and names the
// bindings of the oldest.
func (e *ES) digestUnused(ctx context.Context, d *Digest, _ Window) error {
	var res struct {
		Hits struct {
			Total struct {
				Value int64 `json:"value"`
			} `json:"total"`
			Hits []struct {
				Source struct {
					Kubesift struct {
						Finding struct {
							Object   posture.ObjectRef `json:"object"`
							OpenedAt time.Time         `json:"opened_at"`
						} `json:"finding"`
					} `json:"kubesift"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	q := map[string]any{"size": DigestTopBindings, "track_total_hits": true,
		"query": inCluster(d.Cluster, Window{}, openState, map[string]any{"term": map[string]any{checkField: UnusedBindingCheck}}),
		"sort": []any{
			map[string]any{"kubesift.finding.opened_at": map[string]any{"order": "asc", "unmapped_type": "date"}},
			map[string]any{"kubesift.finding.id": map[string]any{"order": "asc", "unmapped_type": "keyword"}},
		},
		"_source": []string{"kubesift.finding.object", "kubesift.finding.opened_at"}}
	if _, err := e.search(ctx, e.indices.Findings, q, &res); err != nil {
		return err
	}
	d.UnusedBindings = res.Hits.Total.Value
	for _, h := range res.Hits.Hits {
		f := h.Source.Kubesift.Finding
		d.TopUnused = append(d.TopUnused, DigestBinding{Kind: f.Object.Kind, Namespace: f.Object.Namespace, Name: f.Object.Name, Since: f.OpenedAt.UTC()})
	}
	return nil
}

// digestAlerts counts the window's alerts and the top rules.
func (e *ES) digestAlerts(ctx context.Context, d *Digest, w Window) error {
	var res struct {
		hitsTotal
		Aggregations struct {
			Rules terms[ruleBucket] `json:"rules"`
		} `json:"aggregations"`
	}
	q := map[string]any{"size": 0, "track_total_hits": true, "query": inCluster(d.Cluster, w), "aggs": map[string]any{
		"rules": topRulesAgg(DigestTopRules, false),
	}}
	if _, err := e.search(ctx, e.indices.Alerts, q, &res); err != nil {
		return err
	}
	d.Alerts = res.Hits.Total.Value
	for _, b := range res.Aggregations.Rules.Buckets {
		r := b.rule()
		d.Rules = append(d.Rules, DigestRule{ID: r.ID, Name: r.Name, Alerts: r.Count, Severity: r.Severity})
	}
	d.OtherRules = d.Alerts - sumCounts(d.Rules, func(r DigestRule) int64 { return r.Alerts })
	return nil
}

// digestWarnings counts the window's Warning Events by reason.
func (e *ES) digestWarnings(ctx context.Context, d *Digest, w Window) error {
	var res struct {
		hitsTotal
		Aggregations struct {
			Reasons terms[bucket] `json:"reasons"`
		} `json:"aggregations"`
	}
	q := map[string]any{"size": 0, "track_total_hits": true,
		"query": inCluster(d.Cluster, w, map[string]any{"term": map[string]any{"kubernetes.event.type": "Warning"}}),
		"aggs":  map[string]any{"reasons": map[string]any{"terms": map[string]any{"field": "kubernetes.event.reason", "size": DigestTopReasons}}},
	}
	if _, err := e.search(ctx, e.indices.Events, q, &res); err != nil {
		return err
	}
	d.Warnings = res.Hits.Total.Value
	for _, b := range res.Aggregations.Reasons.Buckets {
		d.Reasons = append(d.Reasons, DigestReason{Reason: b.str(), Warnings: b.DocCount})
	}
	d.OtherWarnings = d.Warnings - sumCounts(d.Reasons, func(r DigestReason) int64 { return r.Warnings })
	return nil
}

// trimmedQuery selects records indexed with part of their content left
// out by the processor's size policy or the collector's fit.
var trimmedQuery = map[string]any{"bool": map[string]any{"minimum_should_match": 1, "should": []any{
	map[string]any{"term": map[string]any{"kubesift.record.truncated": true}},
	map[string]any{"exists": map[string]any{"field": "kubesift.record.body_dropped"}},
	map[string]any{"exists": map[string]any{"field": "kubesift.record.dropped_fields"}},
}}}

// digestRecords counts the audit records and Events indexed in the
// window, and the trimmed ones among them.
func (e *ES) digestRecords(ctx context.Context, d *Digest, w Window) error {
	for _, part := range []struct {
		index string
		n     *int64
	}{{e.indices.Audit, &d.AuditRecords}, {e.indices.Events, &d.Events}} {
		var res struct {
			hitsTotal
			Aggregations struct {
				T struct {
					DocCount int64 `json:"doc_count"`
				} `json:"t"`
			} `json:"aggregations"`
		}
		q := map[string]any{"size": 0, "track_total_hits": true, "query": inCluster(d.Cluster, w),
			"aggs": map[string]any{"t": map[string]any{"filter": trimmedQuery}}}
		if _, err := e.search(ctx, part.index, q, &res); err != nil {
			return err
		}
		*part.n = res.Hits.Total.Value
		d.Trimmed += res.Aggregations.T.DocCount
	}
	return nil
}
