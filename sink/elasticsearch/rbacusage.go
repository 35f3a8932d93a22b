package elasticsearch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"time"

	"github.com/kubesift/kubesift/rules/rbacusage"
)

// The usage index (sink.elasticsearch.findings.usage_index) holds one
// document per (cluster, binding, role, subject) — its last use and its
// pairs, replaced whole on each write — and one "watch" document per
// cluster: since when it is watched and up to when its audit trail was
// read. One posture consumer owns a cluster at a time (the objects topic is
// partitioned by cluster), so documents are replaced, not merged; a
// previous owner's late write can only carry older times, which the next
// owner's reads merge away (merging is idempotent).

// usageBatch bounds one bulk request of the usage index, so a cluster of
// any size is written in bounded requests.
var usageBatch = 500

// UsageStore reads and writes the usage index and reads uses from the
// audit data stream.
type UsageStore struct {
	es          *Client
	index       string
	auditStream string
	// exists is set once the index was seen to exist: a bulk write to a
	// missing index would create it with a dynamic mapping Load cannot
	// sort on, so Save refuses until `kubesift setup es` made it.
	exists atomic.Bool
}

// NewUsageStore is the store of index, reading uses from auditStream.
func NewUsageStore(es *Client, index, auditStream string) *UsageStore {
	return &UsageStore{es: es, index: index, auditStream: auditStream}
}

// usageDoc is a document of the usage index.
type usageDoc struct {
	Cluster string `json:"cluster"`
	// Type is "usage" or "watch".
	Type       string             `json:"type"`
	Key        string             `json:"key,omitempty"`
	Binding    *rbacusage.Ref     `json:"binding,omitempty"`
	Role       *rbacusage.Ref     `json:"role,omitempty"`
	Subject    *rbacusage.Subject `json:"subject,omitempty"`
	LastUsed   *time.Time         `json:"last_used,omitempty"`
	Pairs      []usagePair        `json:"pairs,omitempty"`
	WatchStart *time.Time         `json:"watch_start,omitempty"`
	ReadTo     *time.Time         `json:"read_to,omitempty"`
	Updated    time.Time          `json:"updated"`
}

type usagePair struct {
	rbacusage.Pair
	LastUsed time.Time `json:"last_used"`
}

// UsageMappings map the usage index.
func UsageMappings() map[string]any {
	kw := map[string]any{"type": "keyword"}
	date := map[string]any{"type": "date"}
	ref := map[string]any{"properties": map[string]any{"kind": kw, "namespace": kw, "name": kw}}
	return map[string]any{
		"dynamic": "strict",
		"properties": map[string]any{
			"cluster": kw, "type": kw, "key": kw, "binding": ref, "role": ref, "subject": ref,
			"last_used": date, "watch_start": date, "read_to": date, "updated": date,
			"pairs": map[string]any{"properties": map[string]any{
				"verb": kw, "api_group": kw, "resource": kw, "subresource": kw, "non_resource_url": kw, "last_used": date,
			}},
		},
	}
}

func usageID(cluster, key string) string {
	sum := sha256.Sum256([]byte(cluster + "\x00" + key))
	return hex.EncodeToString(sum[:])
}

// Save writes the watch document of cluster and the given usages, in bulk
// requests of at most usageBatch documents. Every document is written or
// Save returns an error; writing the same state again is harmless. It
// refuses to write before the index exists (checkIndex).
func (s *UsageStore) Save(ctx context.Context, cluster string, snap rbacusage.Snapshot) error {
	if err := s.checkIndex(ctx); err != nil {
		return fmt.Errorf("rbac usage: save cluster %s: %w", cluster, err)
	}
	now := time.Now().UTC()
	docs := []usageDoc{{Cluster: cluster, Type: "watch", WatchStart: timePtr(snap.WatchStart), ReadTo: timePtr(snap.ReadTo), Updated: now}}
	for _, u := range snap.Usages {
		d := usageDoc{Cluster: cluster, Type: "usage", Key: u.Grant.Key(), Binding: &u.Grant.Binding, Role: &u.Grant.Role,
			Subject: &u.Grant.Subject, LastUsed: timePtr(u.LastUsed), Updated: now}
		for _, p := range u.Pairs {
			d.Pairs = append(d.Pairs, usagePair{p.Pair, p.LastUsed})
		}
		docs = append(docs, d)
	}
	for len(docs) > 0 {
		n := min(len(docs), usageBatch)
		if err := s.bulk(ctx, docs[:n]); err != nil {
			return fmt.Errorf("rbac usage: save cluster %s: %w", cluster, err)
		}
		docs = docs[n:]
	}
	return nil
}

func (s *UsageStore) checkIndex(ctx context.Context) error {
	if s.exists.Load() {
		return nil
	}
	status, body, h, err := Call(ctx, s.es, http.MethodHead, "/"+url.PathEscape(s.index), nil)
	switch {
	case err != nil:
		return fmt.Errorf("check index %s: %w", s.index, err)
	case status == http.StatusNotFound:
		return fmt.Errorf("index %s does not exist: run kubesift setup es", s.index)
	case status >= 300:
		return StatusError("check index "+s.index, status, body, h)
	}
	s.exists.Store(true)
	return nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func (s *UsageStore) bulk(ctx context.Context, docs []usageDoc) error {
	var buf bytes.Buffer
	for i := range docs {
		d := &docs[i]
		meta, _ := json.Marshal(map[string]any{"index": map[string]any{"_index": s.index, "_id": usageID(d.Cluster, d.Key)}})
		body, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("encode %s: %w", d.Key, err)
		}
		buf.Write(meta)
		buf.WriteByte('\n')
		buf.Write(body)
		buf.WriteByte('\n')
	}
	status, body, h, err := Call(ctx, s.es, http.MethodPost, "/_bulk", buf.Bytes())
	switch {
	case err != nil:
		return fmt.Errorf("bulk to %s: %w", s.index, err)
	case status >= 300:
		return StatusError("bulk to "+s.index, status, body, h)
	}
	var res struct {
		Errors bool `json:"errors"`
		Items  []map[string]struct {
			Status int `json:"status"`
			Error  struct {
				Type   string `json:"type"`
				Reason string `json:"reason"`
			} `json:"error"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return fmt.Errorf("bulk to %s: decode the answer: %w", s.index, err)
	}
	if !res.Errors {
		return nil
	}
	var errs []error
	for _, it := range res.Items {
		for _, r := range it {
			if r.Status >= 300 {
				errs = append(errs, fmt.Errorf("status %d: %s: %s", r.Status, r.Error.Type, r.Error.Reason))
			}
		}
	}
	if len(errs) == 0 {
		return fmt.Errorf("bulk to %s: the answer says errors but names no refused document", s.index)
	}
	return fmt.Errorf("bulk to %s: %d document(s) refused, first: %w", s.index, len(errs), errs[0])
}

// Load reads what the index holds of cluster (refreshed first, since the
// previous owner may have written less than a refresh interval ago). A
// missing index is an empty snapshot. Documents are paged with
// search_after, so any number is read in bounded answers.
func (s *UsageStore) Load(ctx context.Context, cluster string) (rbacusage.Snapshot, error) {
	var snap rbacusage.Snapshot
	if found, err := refreshIndex(ctx, s.es, s.index); err != nil || !found {
		if err != nil {
			err = fmt.Errorf("rbac usage: %w", err)
		}
		return snap, err
	}
	var after []any
	for {
		q := map[string]any{
			"size":  statesPage,
			"query": map[string]any{"term": map[string]any{"cluster": cluster}},
			"sort":  []any{map[string]any{"key": "asc"}, map[string]any{"type": "asc"}},
		}
		if after != nil {
			q["search_after"] = after
		}
		req, _ := json.Marshal(q)
		status, body, h, err := Call(ctx, s.es, http.MethodPost, "/"+url.PathEscape(s.index)+"/_search", req)
		switch {
		case err != nil:
			return snap, fmt.Errorf("rbac usage: search %s: %w", s.index, err)
		case status >= 300:
			return snap, fmt.Errorf("rbac usage: %w", StatusError("search "+s.index, status, body, h))
		}
		var res struct {
			Hits struct {
				Hits []struct {
					Source usageDoc `json:"_source"`
					Sort   []any    `json:"sort"`
				} `json:"hits"`
			} `json:"hits"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			return snap, fmt.Errorf("rbac usage: search %s: decode the answer: %w", s.index, err)
		}
		for _, hit := range res.Hits.Hits {
			addDoc(&snap, &hit.Source)
		}
		if len(res.Hits.Hits) < statesPage {
			return snap, nil
		}
		after = res.Hits.Hits[len(res.Hits.Hits)-1].Sort
	}
}

// Clusters lists the clusters the index holds usage of (for the CLI),
// refreshed first like Load, so a cluster written a moment ago is listed.
func (s *UsageStore) Clusters(ctx context.Context) ([]string, error) {
	if found, err := refreshIndex(ctx, s.es, s.index); err != nil || !found {
		if err != nil {
			err = fmt.Errorf("rbac usage: %w", err)
		}
		return nil, err
	}
	q, _ := json.Marshal(map[string]any{"size": 0, "aggs": map[string]any{"c": map[string]any{"terms": map[string]any{"field": "cluster", "size": 10000}}}})
	status, body, h, err := Call(ctx, s.es, http.MethodPost, "/"+url.PathEscape(s.index)+"/_search?ignore_unavailable=true", q)
	switch {
	case err != nil:
		return nil, fmt.Errorf("rbac usage: search %s: %w", s.index, err)
	case status >= 300:
		return nil, fmt.Errorf("rbac usage: %w", StatusError("search "+s.index, status, body, h))
	}
	var res struct {
		Aggregations struct {
			C struct {
				Buckets []struct {
					Key string `json:"key"`
				} `json:"buckets"`
			} `json:"c"`
		} `json:"aggregations"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("rbac usage: search %s: decode the answer: %w", s.index, err)
	}
	var out []string
	for _, b := range res.Aggregations.C.Buckets {
		out = append(out, b.Key)
	}
	// The buckets come by document count; the CLI lists clusters by name.
	slices.Sort(out)
	return out, nil
}

// addDoc adds one document of the index to snap; a document without the
// fields of its type is skipped (the index is strict, so only a foreign
// writer makes one).
func addDoc(snap *rbacusage.Snapshot, d *usageDoc) {
	switch {
	case d.Type == "watch":
		if d.WatchStart != nil {
			snap.WatchStart = *d.WatchStart
		}
		if d.ReadTo != nil {
			snap.ReadTo = *d.ReadTo
		}
	case d.Type == "usage" && d.Binding != nil && d.Role != nil && d.Subject != nil && d.LastUsed != nil:
		u := rbacusage.Usage{Grant: rbacusage.Grant{Binding: *d.Binding, Role: *d.Role, Subject: *d.Subject}, LastUsed: *d.LastUsed}
		for _, p := range d.Pairs {
			u.Pairs = append(u.Pairs, rbacusage.PairUse{Pair: p.Pair, LastUsed: p.LastUsed})
		}
		snap.Usages = append(snap.Usages, u)
	}
}
