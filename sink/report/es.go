package report

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// ES is the Source of an Elasticsearch cluster kubesift writes to.
type ES struct {
	client  *elasticsearch.Client
	addr    string
	indices Indices
}

// NewES returns the Source of the cluster client talks to; addr names it
// in the report (give it without credentials).
func NewES(client *elasticsearch.Client, addr string, indices Indices) *ES {
	return &ES{client: client, addr: addr, indices: indices}
}

// Summary asks for each part in turn.
func (e *ES) Summary(ctx context.Context, w Window) (*Summary, error) {
	s := &Summary{Source: e.addr, Window: w}
	for _, part := range []func(context.Context, *Summary) error{e.alerts, e.timeline, e.topAlerts, e.events, e.audit, e.posture} {
		if err := part(ctx, s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// windowQuery selects @timestamp within s.Window.
func windowQuery(w Window) map[string]any {
	r := map[string]any{"format": "strict_date_optional_time"}
	if !w.From.IsZero() {
		r["gte"] = w.From.UTC().Format(time.RFC3339Nano)
	}
	if !w.To.IsZero() {
		r["lt"] = w.To.UTC().Format(time.RFC3339Nano)
	}
	if len(r) == 1 {
		return map[string]any{"match_all": map[string]any{}}
	}
	return map[string]any{"range": map[string]any{"@timestamp": r}}
}

type bucket struct {
	Key      any    `json:"key"`
	KeyStr   string `json:"key_as_string"`
	DocCount int64  `json:"doc_count"`
}

type terms[B any] struct {
	Buckets []B   `json:"buckets"`
	Other   int64 `json:"sum_other_doc_count"`
}

type value struct {
	Value *float64 `json:"value"`
}

type hitsTotal struct {
	Hits struct {
		Total struct {
			Value int64 `json:"value"`
		} `json:"total"`
	} `json:"hits"`
}

func (b bucket) str() string { s, _ := b.Key.(string); return s }

// topRulesAgg aggregates alerts by rule: the size most frequent, each with
// its name and highest severity, and with tactics its MITRE tactics.
func topRulesAgg(size int, tactics bool) map[string]any {
	aggs := map[string]any{
		"name": map[string]any{"terms": map[string]any{"field": "rule.name", "size": 1, "order": map[string]any{"_key": "asc"}}},
		"sev":  map[string]any{"max": map[string]any{"field": "event.severity"}},
	}
	if tactics {
		aggs["tactics"] = map[string]any{"terms": map[string]any{"field": "threat.tactic.name", "size": maxTactics, "order": map[string]any{"_key": "asc"}}}
	}
	return map[string]any{"terms": map[string]any{"field": "rule.id", "size": size}, "aggs": aggs}
}

// ruleBucket is a bucket of topRulesAgg.
type ruleBucket struct {
	bucket
	Name    terms[bucket] `json:"name"`
	Sev     value         `json:"sev"`
	Tactics terms[bucket] `json:"tactics"`
}

func (b ruleBucket) rule() RuleCount {
	r := RuleCount{ID: b.str(), Count: b.DocCount, Severity: rules.Severity(valueInt(b.Sev))}
	if len(b.Name.Buckets) > 0 {
		r.Name = b.Name.Buckets[0].str()
	}
	for _, t := range b.Tactics.Buckets {
		r.Tactics = append(r.Tactics, t.str())
	}
	return r
}

func (e *ES) alerts(ctx context.Context, s *Summary) error {
	q := map[string]any{
		"size": 0, "track_total_hits": true, "query": windowQuery(s.Window),
		"aggs": map[string]any{
			"sev":   map[string]any{"terms": map[string]any{"field": "event.severity", "size": 10}},
			"rules": topRulesAgg(TopRules, true),
			"actors": map[string]any{"terms": map[string]any{"field": "user.name", "size": TopActors}, "aggs": map[string]any{
				"sev": map[string]any{"max": map[string]any{"field": "event.severity"}},
			}},
		},
	}
	type actorBucket struct {
		bucket
		Sev value `json:"sev"`
	}
	var res struct {
		hitsTotal
		Aggregations struct {
			Sev    terms[bucket]      `json:"sev"`
			Rules  terms[ruleBucket]  `json:"rules"`
			Actors terms[actorBucket] `json:"actors"`
		} `json:"aggregations"`
	}
	if _, err := e.search(ctx, e.indices.Alerts, q, &res); err != nil {
		return err
	}
	a := &res.Aggregations
	s.Alerts = res.Hits.Total.Value
	for _, b := range a.Sev.Buckets {
		if i := severityIndex(rules.Severity(keyInt(b.Key))); i >= 0 {
			s.BySeverity[i] = b.DocCount
		}
	}
	for _, b := range a.Rules.Buckets {
		s.Rules = append(s.Rules, b.rule())
	}
	s.OtherRules = s.Alerts - sumCounts(s.Rules, func(r RuleCount) int64 { return r.Count })
	for _, b := range a.Actors.Buckets {
		s.Actors = append(s.Actors, ActorCount{User: b.str(), Count: b.DocCount, Severity: rules.Severity(valueInt(b.Sev))})
	}
	s.OtherActors = a.Actors.Other
	return nil
}

// timeline asks for the span, then for buckets of the width Dir would end
// on for it (widthFor).
func (e *ES) timeline(ctx context.Context, s *Summary) error {
	if s.Alerts == 0 {
		return nil
	}
	var span struct {
		Aggregations struct {
			First value `json:"first"`
			Last  value `json:"last"`
		} `json:"aggregations"`
	}
	q := map[string]any{"size": 0, "query": windowQuery(s.Window), "aggs": map[string]any{
		"first": map[string]any{"min": map[string]any{"field": "@timestamp"}},
		"last":  map[string]any{"max": map[string]any{"field": "@timestamp"}},
	}}
	if _, err := e.search(ctx, e.indices.Alerts, q, &span); err != nil {
		return err
	}
	if span.Aggregations.First.Value == nil || span.Aggregations.Last.Value == nil {
		return nil
	}
	first, last := time.UnixMilli(int64(*span.Aggregations.First.Value)), time.UnixMilli(int64(*span.Aggregations.Last.Value))
	w := widthLadder[widthFor(first, last)]
	q = map[string]any{"size": 0, "query": windowQuery(s.Window), "aggs": map[string]any{
		"t": map[string]any{
			"date_histogram": map[string]any{"field": "@timestamp", "fixed_interval": fmt.Sprintf("%ds", int64(w/time.Second))},
			"aggs":           map[string]any{"sev": map[string]any{"terms": map[string]any{"field": "event.severity", "size": 10}}},
		},
	}}
	type timeBucket struct {
		bucket
		Sev terms[bucket] `json:"sev"`
	}
	var res struct {
		Aggregations struct {
			T terms[timeBucket] `json:"t"`
		} `json:"aggregations"`
	}
	if _, err := e.search(ctx, e.indices.Alerts, q, &res); err != nil {
		return err
	}
	lo, hi := bucketOf(first, w), bucketOf(last, w)
	s.Timeline = Timeline{Start: time.Unix(lo*int64(w/time.Second), 0).UTC(), Width: w, Counts: make([][numSeverity]int64, hi-lo+1)}
	for _, b := range res.Aggregations.T.Buckets {
		k := bucketOf(time.UnixMilli(keyInt(b.Key)), w) - lo
		if k < 0 || k > hi-lo {
			continue
		}
		for _, sb := range b.Sev.Buckets {
			if i := severityIndex(rules.Severity(keyInt(sb.Key))); i >= 0 {
				s.Timeline.Counts[k][i] = sb.DocCount
			}
		}
	}
	return nil
}

func (e *ES) topAlerts(ctx context.Context, s *Summary) error {
	if s.Alerts == 0 {
		return nil
	}
	q := map[string]any{
		"size": TopAlerts, "query": windowQuery(s.Window),
		"sort": []any{
			map[string]any{"event.severity": "desc"}, map[string]any{"@timestamp": "desc"}, map[string]any{"event.id": "asc"},
		},
		"_source": []string{"@timestamp", "message", "event.id", "event.severity", "rule", "threat.tactic.name", "user.name",
			"orchestrator", "kubesift.alert.message"},
	}
	var res struct {
		Hits struct {
			Hits []struct {
				Source json.RawMessage `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if _, err := e.search(ctx, e.indices.Alerts, q, &res); err != nil {
		return err
	}
	for _, h := range res.Hits.Hits {
		var d alertDoc
		if err := docJSON.Unmarshal(h.Source, &d); err != nil {
			return fmt.Errorf("report: %s: an alert's source: %w", e.indices.Alerts, err)
		}
		s.TopAlerts = append(s.TopAlerts, d.row())
	}
	return nil
}

func (e *ES) events(ctx context.Context, s *Summary) error {
	q := map[string]any{
		"size": 0, "track_total_hits": true, "query": windowQuery(s.Window),
		"aggs": map[string]any{
			"reasons": map[string]any{"terms": map[string]any{"field": "kubernetes.event.reason", "size": TopReasons}, "aggs": map[string]any{
				"warnings": map[string]any{"filter": map[string]any{"term": map[string]any{"kubernetes.event.type": "Warning"}}},
			}},
		},
	}
	type reasonBucket struct {
		bucket
		Warnings struct {
			DocCount int64 `json:"doc_count"`
		} `json:"warnings"`
	}
	var res struct {
		hitsTotal
		Aggregations struct {
			Reasons terms[reasonBucket] `json:"reasons"`
		} `json:"aggregations"`
	}
	if _, err := e.search(ctx, e.indices.Events, q, &res); err != nil {
		return err
	}
	s.Events = res.Hits.Total.Value
	for _, b := range res.Aggregations.Reasons.Buckets {
		s.Reasons = append(s.Reasons, ReasonCount{Reason: b.str(), Count: b.DocCount, Warnings: b.Warnings.DocCount})
	}
	s.OtherEvents = s.Events - sumCounts(s.Reasons, func(r ReasonCount) int64 { return r.Count })
	return nil
}

func (e *ES) audit(ctx context.Context, s *Summary) error {
	var res hitsTotal
	q := map[string]any{"size": 0, "track_total_hits": true, "query": windowQuery(s.Window)}
	if _, err := e.search(ctx, e.indices.Audit, q, &res); err != nil {
		return err
	}
	s.AuditRecords = res.Hits.Total.Value
	return nil
}

// posture reads the findings index (one document per finding, its
// current state) and each cluster's latest cluster-scope score. Neither is
// windowed: posture is the current state.
func (e *ES) posture(ctx context.Context, s *Summary) error {
	p := &Posture{}
	foundF, err := e.findings(ctx, p)
	if err != nil {
		return err
	}
	foundS, err := e.scores(ctx, p)
	if err != nil {
		return err
	}
	if foundF || foundS {
		s.Posture = p
	}
	return nil
}

// findings fills the counts and failing checks; found is whether the
// index holds any finding.
func (e *ES) findings(ctx context.Context, p *Posture) (found bool, err error) {
	type checkBucket struct {
		bucket
		Title terms[bucket] `json:"title"`
		Sev   terms[bucket] `json:"sev"`
	}
	var res struct {
		hitsTotal
		Aggregations struct {
			Open struct {
				DocCount int64              `json:"doc_count"`
				Checks   terms[checkBucket] `json:"checks"`
			} `json:"open"`
		} `json:"aggregations"`
	}
	q := map[string]any{"size": 0, "track_total_hits": true, "aggs": map[string]any{
		"open": map[string]any{
			"filter": map[string]any{"terms": map[string]any{"kubesift.finding.state": []string{"open", "reopened"}}},
			"aggs": map[string]any{"checks": map[string]any{
				"terms": map[string]any{"field": "kubesift.finding.check_id", "size": TopChecks},
				"aggs": map[string]any{
					"title": map[string]any{"terms": map[string]any{"field": "kubesift.finding.title.keyword", "size": 1, "order": map[string]any{"_key": "asc"}}},
					"sev":   map[string]any{"terms": map[string]any{"field": "kubesift.finding.severity", "size": 10}},
				},
			}},
		},
	}}
	if found, err = e.search(ctx, e.indices.Findings, q, &res); err != nil || !found {
		return false, err
	}
	p.Findings, p.Open = res.Hits.Total.Value, res.Aggregations.Open.DocCount
	for _, b := range res.Aggregations.Open.Checks.Buckets {
		c := Check{ID: b.str(), Open: b.DocCount}
		if len(b.Title.Buckets) > 0 {
			c.Title = b.Title.Buckets[0].str()
		}
		for _, sb := range b.Sev.Buckets {
			sev, _ := rules.ParseSeverity(sb.str())
			c.Severity = max(c.Severity, sev)
		}
		p.Failing = append(p.Failing, c)
	}
	p.OtherFailing = p.Open - sumCounts(p.Failing, func(c Check) int64 { return c.Open })
	return p.Findings > 0, nil
}

// scores fills each cluster's latest cluster score; found is whether the
// stream holds any score, of any scope.
func (e *ES) scores(ctx context.Context, p *Posture) (found bool, err error) {
	type clusterBucket struct {
		bucket
		Latest struct {
			Hits struct {
				Hits []struct {
					Source scoreDoc `json:"_source"`
				} `json:"hits"`
			} `json:"hits"`
		} `json:"latest"`
	}
	var res struct {
		hitsTotal
		Aggregations struct {
			Cluster struct {
				Clusters terms[clusterBucket] `json:"clusters"`
			} `json:"cluster"`
		} `json:"aggregations"`
	}
	q := map[string]any{"size": 0, "track_total_hits": true, "aggs": map[string]any{
		"cluster": map[string]any{
			"filter": map[string]any{"term": map[string]any{"kubesift.posture_score.scope": "cluster"}},
			"aggs": map[string]any{"clusters": map[string]any{
				"terms": map[string]any{"field": "orchestrator.cluster.name", "size": maxClusters, "order": map[string]any{"_key": "asc"}},
				"aggs": map[string]any{"latest": map[string]any{"top_hits": map[string]any{
					"size": 1, "sort": []any{map[string]any{"@timestamp": "desc"}},
					"_source": []string{"@timestamp", "orchestrator.cluster.name", "kubesift.posture_score"},
				}}},
			}},
		},
	}}
	if found, err = e.search(ctx, e.indices.Scores, q, &res); err != nil || !found {
		return false, err
	}
	for _, b := range res.Aggregations.Cluster.Clusters.Buckets {
		for _, h := range b.Latest.Hits.Hits {
			ps := h.Source.Kubesift.PostureScore
			p.Scores = append(p.Scores, Score{Cluster: b.str(), Percent: ps.Percent, Passed: ps.Passed, Failed: ps.Failed, At: h.Source.Timestamp.UTC()})
		}
	}
	return res.Hits.Total.Value > 0, nil
}

// Refresh makes what was written so far searchable (a writer that has
// just finished, like kubesift run's processor, may have written less than
// a refresh interval ago).
func (e *ES) Refresh(ctx context.Context) error {
	var names []string
	for _, n := range []string{e.indices.Audit, e.indices.Events, e.indices.Alerts, e.indices.Findings, e.indices.Scores, e.indices.Transitions} {
		if n != "" {
			names = append(names, url.PathEscape(n))
		}
	}
	path := "/" + strings.Join(names, ",") + "/_refresh?ignore_unavailable=true&allow_no_indices=true"
	status, b, h, err := elasticsearch.Call(ctx, e.client, http.MethodPost, path, nil)
	switch {
	case err != nil:
		return fmt.Errorf("report: refresh: %w", err)
	case status >= 300:
		return fmt.Errorf("report: %w", elasticsearch.StatusError("refresh", status, b, h))
	}
	return nil
}

// search runs one search on index and decodes the answer into out. An
// index that does not exist is an empty one: found is false.
func (e *ES) search(ctx context.Context, index string, q map[string]any, out any) (found bool, err error) {
	if index == "" {
		return false, nil
	}
	body, err := json.Marshal(q)
	if err != nil {
		return false, fmt.Errorf("report: %s: %w", index, err)
	}
	path := "/" + url.PathEscape(index) + "/_search?ignore_unavailable=true&allow_no_indices=true"
	status, b, h, err := elasticsearch.Call(ctx, e.client, http.MethodPost, path, body)
	switch {
	case err != nil:
		return false, fmt.Errorf("report: search %s: %w", index, err)
	case status == http.StatusNotFound:
		return false, nil
	case status >= 300:
		return false, fmt.Errorf("report: %w", elasticsearch.StatusError("search "+index, status, b, h))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return false, fmt.Errorf("report: search %s: decode the answer: %w", index, err)
	}
	return true, nil
}

func keyInt(k any) int64 {
	f, _ := k.(float64)
	return int64(f)
}

func valueInt(v value) int64 {
	if v.Value == nil {
		return 0
	}
	return int64(*v.Value)
}
