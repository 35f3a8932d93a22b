package elasticsearch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kubesift/kubesift/rules/rbacusage"
)

// Audit document fields the usage reads: the authorization annotations are
// stored with dots replaced (sink/ecs).
const (
	fieldReason   = "kubernetes.audit.annotations.authorization_k8s_io/reason"
	fieldDecision = "kubernetes.audit.annotations.authorization_k8s_io/decision"
)

// usagePage is the composite aggregation's page: distinct (reason, verb,
// resource) combinations per answer.
var usagePage = 1000

// UseStats counts the distinct authorization reasons one read met.
type UseStats struct {
	// Parsed reasons named an RBAC grant; Other were another authorizer's;
	// Invalid looked like RBAC's and did not parse (InvalidErr is the first
	// such error, naming the part).
	Parsed, Other, Invalid int
	InvalidErr             error
}

// Uses reads the uses of cluster from the audit data stream: allowed
// requests whose document was built (event.ingested) in [from, to), grouped
// by reason, verb, API group, resource, subresource and namespace, each
// with its latest time — a composite aggregation paged in usagePage
// buckets, so the answer stays bounded whatever the traffic. Non-resource
// requests are read apart, grouped by request URI (a handful of paths;
// resource URIs would be one bucket per object) and named by its path
// without the query. A missing stream is no uses.
func (s *UsageStore) Uses(ctx context.Context, cluster string, from, to time.Time) ([]rbacusage.Use, UseStats, error) {
	var st UseStats
	var out []rbacusage.Use
	for _, resource := range []bool{true, false} {
		err := s.compositeUses(ctx, cluster, from, to, resource, func(b usageBucket) {
			g, err := rbacusage.ParseReason(b.Key.Reason, str(b.Key.Namespace))
			switch {
			case errors.Is(err, rbacusage.ErrNotRBAC):
				st.Other++
				return
			case err != nil:
				st.Invalid++
				if st.InvalidErr == nil {
					st.InvalidErr = err
				}
				return
			}
			st.Parsed++
			p := rbacusage.Pair{Verb: b.Key.Verb, APIGroup: str(b.Key.Group), Resource: str(b.Key.Resource), Subresource: str(b.Key.Sub)}
			if !resource {
				// The request URI holds the query (/api?timeout=32s); an RBAC
				// nonResourceURLs entry matches the path alone.
				path, _, _ := strings.Cut(str(b.Key.URI), "?")
				p = rbacusage.Pair{Verb: b.Key.Verb, NonResourceURL: path}
			}
			at, err := time.Parse(time.RFC3339Nano, b.Last.ValueString)
			if err != nil {
				at = time.UnixMilli(int64(b.Last.Value)).UTC()
			}
			out = append(out, rbacusage.Use{Grant: g, Pair: p, At: at})
		})
		if err != nil {
			return nil, st, fmt.Errorf("rbac usage: read uses of cluster %s from %s: %w", cluster, s.auditStream, err)
		}
	}
	return out, st, nil
}

type usageBucket struct {
	Key struct {
		Reason    string  `json:"reason"`
		Verb      string  `json:"verb"`
		Group     *string `json:"group"`
		Resource  *string `json:"resource"`
		Sub       *string `json:"sub"`
		Namespace *string `json:"ns"`
		URI       *string `json:"uri"`
	} `json:"key"`
	Last struct {
		Value       float64 `json:"value"`
		ValueString string  `json:"value_as_string"`
	} `json:"last"`
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func (s *UsageStore) compositeUses(ctx context.Context, cluster string, from, to time.Time, resource bool, each func(usageBucket)) error {
	terms := func(name, field string, missing bool) map[string]any {
		t := map[string]any{"field": field}
		if missing {
			t["missing_bucket"] = true
		}
		return map[string]any{name: map[string]any{"terms": t}}
	}
	sources := []any{terms("reason", fieldReason, false), terms("verb", "kubernetes.audit.verb", false)}
	hasResource := map[string]any{"exists": map[string]any{"field": "kubernetes.audit.objectRef.resource"}}
	filter := []any{
		map[string]any{"term": map[string]any{"orchestrator.cluster.name": cluster}},
		map[string]any{"term": map[string]any{fieldDecision: "allow"}},
		map[string]any{"exists": map[string]any{"field": fieldReason}},
	}
	period := map[string]any{"lt": to.UTC().Format(time.RFC3339Nano)}
	if !from.IsZero() { // zero: all the history the stream holds
		period["gte"] = from.UTC().Format(time.RFC3339Nano)
	}
	filter = append(filter, map[string]any{"range": map[string]any{"event.ingested": period}})
	boolQ := map[string]any{"filter": filter}
	if resource {
		filter = append(filter, hasResource)
		boolQ["filter"] = filter
		sources = append(sources, terms("group", "kubernetes.audit.objectRef.apiGroup", true), terms("resource", "kubernetes.audit.objectRef.resource", true),
			terms("sub", "kubernetes.audit.objectRef.subresource", true), terms("ns", "kubernetes.audit.objectRef.namespace", true))
	} else {
		boolQ["must_not"] = []any{hasResource}
		sources = append(sources, terms("uri", "kubernetes.audit.requestURI", true))
	}
	var after map[string]any
	for {
		comp := map[string]any{"size": usagePage, "sources": sources}
		if after != nil {
			comp["after"] = after
		}
		q, _ := json.Marshal(map[string]any{
			"size": 0, "query": map[string]any{"bool": boolQ},
			"aggs": map[string]any{"u": map[string]any{"composite": comp, "aggs": map[string]any{"last": map[string]any{"max": map[string]any{"field": "@timestamp"}}}}},
		})
		status, body, h, err := Call(ctx, s.es, http.MethodPost, "/"+url.PathEscape(s.auditStream)+"/_search?ignore_unavailable=true", q)
		switch {
		case err != nil:
			return err
		case status >= 300:
			return StatusError("search "+s.auditStream, status, body, h)
		}
		var res struct {
			Aggregations struct {
				U struct {
					AfterKey map[string]any `json:"after_key"`
					Buckets  []usageBucket  `json:"buckets"`
				} `json:"u"`
			} `json:"aggregations"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			return fmt.Errorf("decode the answer: %w", err)
		}
		for _, b := range res.Aggregations.U.Buckets {
			each(b)
		}
		if len(res.Aggregations.U.Buckets) < usagePage || res.Aggregations.U.AfterKey == nil {
			return nil
		}
		after = res.Aggregations.U.AfterKey
	}
}
