package elasticsearch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/kubesift/kubesift/rules/posture"
)

// ActorQuery names the change whose author FindActor looks for: one
// version of one object, as the objects topic reported it.
type ActorQuery struct {
	Cluster string
	// APIGroup ("" for core) and Resource (the plural, "networkpolicies")
	// are the object's API resource, as audit objectRef writes them.
	APIGroup, Resource string
	Namespace, Name    string
	// ResourceVersion is the version the object record carries.
	ResourceVersion string
	// Deleted says the change is the object's delete: only delete
	// requests match, by time (the tombstone carries the last version
	// before the delete, which an earlier write produced).
	Deleted bool
	// ObservedAt is when the collector saw the change. A write matches by
	// time when its stageTimestamp is within [ObservedAt-Window,
	// ObservedAt+Skew]: the collector sees a change after the API server
	// answered it, and Skew allows for the two clocks.
	ObservedAt   time.Time
	Skew, Window time.Duration
}

// FindActor returns the author of the change q names, from the audit data
// stream (or index) index, or nil when no audit record matches (yet). The
// candidates are successful (2xx) writes — create, update, patch, delete
// — of the object itself (no subresource) at stage ResponseComplete, in
// q.Cluster. Among them the write whose responseObject has q's
// resourceVersion wins (RequestResponse and Request policies log the
// body); otherwise the latest whose stageTimestamp lies in q's time window
// (Metadata policies log no body). The search is not preceded by a
// refresh: a record indexed but not yet searchable is found by the
// caller's next try.
func FindActor(ctx context.Context, es *Client, index string, q ActorQuery) (*posture.Actor, error) {
	req, err := json.Marshal(actorSearch(q))
	if err != nil {
		return nil, fmt.Errorf("find actor: encode the query: %w", err)
	}
	status, body, h, err := Call(ctx, es, http.MethodPost, "/"+url.PathEscape(index)+"/_search?ignore_unavailable=true", req)
	switch {
	case err != nil:
		return nil, fmt.Errorf("find actor: search %s: %w", index, err)
	case status >= 300:
		return nil, fmt.Errorf("find actor: %w", StatusError("search "+index, status, body, h))
	}
	var res actorHits
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("find actor: search %s: decode the answer: %w", index, err)
	}
	if len(res.Hits.Hits) == 0 {
		return nil, nil
	}
	hit := &res.Hits.Hits[0]
	a := hit.Source.Kubernetes.Audit
	user := a.User
	if a.ImpersonatedUser != nil && a.ImpersonatedUser.Username != "" {
		// The request acted as the impersonated user; the impersonator
		// stays in the audit document the actor links to.
		user = *a.ImpersonatedUser
	}
	out := &posture.Actor{User: user.Username, Verb: a.Verb, Groups: user.Groups, UserAgent: a.UserAgent, AuditID: a.AuditID,
		AuditIndex: hit.Index, AuditDocID: hit.ID}
	if len(a.SourceIPs) > 0 {
		out.SourceIP = a.SourceIPs[0]
	}
	return out, nil
}

// actorSearch is the search of FindActor: the filter every candidate
// passes, then an exact version match scoring above a time match, newest
// first among equals.
func actorSearch(q ActorQuery) map[string]any {
	term := func(field string, v any) map[string]any {
		return map[string]any{"term": map[string]any{field: v}}
	}
	exists := func(field string) map[string]any {
		return map[string]any{"exists": map[string]any{"field": field}}
	}
	verbs := []string{"create", "update", "patch", "delete"}
	if q.Deleted {
		verbs = []string{"delete"}
	}
	filter := []any{
		term("orchestrator.cluster.name", q.Cluster),
		term("kubernetes.audit.stage", "ResponseComplete"),
		map[string]any{"terms": map[string]any{"kubernetes.audit.verb": verbs}},
		term("kubernetes.audit.objectRef.resource", q.Resource),
		term("kubernetes.audit.objectRef.name", q.Name),
		map[string]any{"range": map[string]any{"kubernetes.audit.responseStatus.code": map[string]any{"gte": 200, "lt": 300}}},
	}
	// An empty apiGroup (core) or namespace (cluster-scoped) constrains
	// nothing: the resource and name already tell the object apart, and
	// the API server writes objectRef.namespace for a Namespace's own
	// requests (/api/v1/namespaces/<name>).
	if q.APIGroup != "" {
		filter = append(filter, term("kubernetes.audit.objectRef.apiGroup", q.APIGroup))
	}
	if q.Namespace != "" {
		filter = append(filter, term("kubernetes.audit.objectRef.namespace", q.Namespace))
	}
	timed := map[string]any{"range": map[string]any{"kubernetes.audit.stageTimestamp": map[string]any{
		"gte": q.ObservedAt.Add(-q.Window).UTC().Format(time.RFC3339Nano),
		"lte": q.ObservedAt.Add(q.Skew).UTC().Format(time.RFC3339Nano),
	}}}
	should := []any{map[string]any{"constant_score": map[string]any{"filter": timed, "boost": 1}}}
	if !q.Deleted && q.ResourceVersion != "" {
		should = append(should, map[string]any{"constant_score": map[string]any{
			"filter": term("kubernetes.audit.responseObject.metadata.resourceVersion", q.ResourceVersion), "boost": 2}})
	}
	return map[string]any{
		"size": 1,
		"query": map[string]any{"bool": map[string]any{
			"filter": filter, "must_not": []any{exists("kubernetes.audit.objectRef.subresource")}, "should": should, "minimum_should_match": 1,
		}},
		"sort": []any{"_score", map[string]any{"kubernetes.audit.stageTimestamp": "desc"}},
		"_source": []string{"kubernetes.audit.auditID", "kubernetes.audit.verb", "kubernetes.audit.user", "kubernetes.audit.impersonatedUser",
			"kubernetes.audit.userAgent", "kubernetes.audit.sourceIPs"},
	}
}

type actorHits struct {
	Hits struct {
		Hits []struct {
			Index  string `json:"_index"`
			ID     string `json:"_id"`
			Source struct {
				Kubernetes struct {
					Audit struct {
						AuditID          string     `json:"auditID"`
						Verb             string     `json:"verb"`
						User             auditUser  `json:"user"`
						ImpersonatedUser *auditUser `json:"impersonatedUser"`
						UserAgent        string     `json:"userAgent"`
						SourceIPs        []string   `json:"sourceIPs"`
					} `json:"audit"`
				} `json:"kubernetes"`
			} `json:"_source"`
		} `json:"hits"`
	} `json:"hits"`
}

type auditUser struct {
	Username string   `json:"username"`
	Groups   []string `json:"groups"`
}
