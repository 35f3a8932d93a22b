package redact

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kubesift/kubesift/record"
)

// Size-to-fit: the last step of the size policy.
//
// Dropping the bodies is not always enough. kube-apiserver accepts a
// request line of about 1 MiB and logs it at Metadata level, so a
// requestURI (or a user agent, an annotation) alone can push a record past
// what Kafka takes. Published as it is, such a record would be refused by
// the publisher; a source that retried it would block every record behind
// it. So the longest strings of the event are cut, all to the same length,
// until the record fits max_record_bytes: the record keeps its ID, its
// verb, user and object, and says what was cut — flags.truncated, and the
// annotation TruncatedFieldsAnnotation listing each cut field with its
// original size in bytes. The ECS document and the rules read the cut event
// like any other.

// TruncatedFieldsAnnotation is the audit annotation the size policy adds to
// an event whose strings it cut: "path=bytes,…", sorted by path, where path
// is the JSON path of the field (requestURI, annotations.foo, user.groups[2])
// and bytes its original length.
const TruncatedFieldsAnnotation = "kubesift.io/truncated-fields"

// fitKeep are the top-level fields never cut: the record's identity (its ID
// is auditID:stage) and what says how to read it.
var fitKeep = map[string]bool{
	"auditID": true, "stage": true, "kind": true, "apiVersion": true, "level": true,
	"requestReceivedTimestamp": true, "stageTimestamp": true,
}

const (
	// fitMinKeep is the shortest a cut string gets: enough to see what it
	// was. A record that does not fit even so is left to the publisher,
	// which dead-letters it.
	fitMinKeep = 128
	// fitNoteMax bounds the annotation itself (a record with thousands of
	// long strings would otherwise grow by its list of paths).
	fitNoteMax = 2 << 10
	// fitMargin is what a fitted record stays below max_record_bytes by:
	// room for the annotation and for JSON escapes the estimate of a
	// string's length does not see.
	fitMargin = fitNoteMax + 1<<10
)

// fitMetrics counts what size-to-fit did.
type fitMetrics struct {
	fitted prometheus.Counter
	fields prometheus.Counter
}

func newFitMetrics() fitMetrics {
	return fitMetrics{
		fitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubesift_collector_fitted_total",
			Help: "Audit records over max_record_bytes without bodies to drop whose longest strings were cut to fit (flags.truncated).",
		}),
		fields: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubesift_collector_fitted_fields_total",
			Help: "String fields cut by the size policy to make audit records fit max_record_bytes.",
		}),
	}
}

func (m fitMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.fitted, m.fields}
}

// strLeaf is one string of the parsed event and where it sits.
type strLeaf struct {
	path string
	get  func() string
	set  func(string)
	// copies is how many times the string is in the message: the user
	// name is in the partition key as well.
	copies int
}

// fit cuts the longest strings of rec's audit event so that its estimate
// is below max_record_bytes. size is the current estimate. It reports
// whether the record fits now; when it does not (the record's size is in
// fields it may not cut, or in its number of fields), rec is unchanged.
func (s *Sanitizer) fit(rec *record.Record, size int) (bool, error) {
	v, err := parseJSON(rec.Object)
	if err != nil {
		return false, fmt.Errorf("size policy: parse %s: %w", rec.ID, err)
	}
	top, ok := v.(map[string]any)
	if !ok {
		return false, nil
	}
	var leaves []strLeaf
	for k, val := range top {
		if !fitKeep[k] {
			collectStrings(&leaves, k, val, top, k, 0)
		}
	}
	for i := range leaves {
		leaves[i].copies = 1
		if leaves[i].path == "user.username" {
			leaves[i].copies = 2
		}
	}
	cut, ok := cutLeaves(leaves, size-s.maxRecord+fitMargin)
	if !ok {
		return false, nil
	}
	noteCut(top, cut)

	// Back through the typed view, so that Object and rec.Audit agree as
	// after any other step of the size policy.
	raw, err := encodeJSON(top)
	if err != nil {
		return false, fmt.Errorf("size policy: re-encode %s: %w", rec.ID, err)
	}
	var ev auditv1.Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return false, fmt.Errorf("size policy: decode the cut event %s: %w", rec.ID, err)
	}
	rec.Audit = &ev
	// The partition key holds the user name, which may have been cut: the
	// key follows, so the message fits as well (the same cut every time,
	// so a re-delivery lands in the same partition). The ID is untouched.
	rec.Key = record.KeyAudit(rec.Cluster, ev.User.Username)
	if err := rec.SyncObject(); err != nil {
		return false, fmt.Errorf("size policy: re-encode %s: %w", rec.ID, err)
	}
	rec.Flags.Truncated = true
	s.fitM.fitted.Inc()
	s.fitM.fields.Add(float64(len(cut)))
	return s.estimate(rec) <= s.maxRecord, nil
}

// collectStrings adds every string under val (at path, held by parent
// under key, a string key of a map or an int index of a slice) to leaves.
func collectStrings(leaves *[]strLeaf, path string, val any, parent any, key any, depth int) {
	if depth > maxDepth {
		return
	}
	switch x := val.(type) {
	case string:
		switch p := parent.(type) {
		case map[string]any:
			k := key.(string)
			*leaves = append(*leaves, strLeaf{path: path, get: func() string { return p[k].(string) }, set: func(v string) { p[k] = v }})
		case []any:
			i := key.(int)
			*leaves = append(*leaves, strLeaf{path: path, get: func() string { return p[i].(string) }, set: func(v string) { p[i] = v }})
		}
	case map[string]any:
		for k, v := range x {
			collectStrings(leaves, path+"."+k, v, x, k, depth+1)
		}
	case []any:
		for i, v := range x {
			collectStrings(leaves, path+"["+strconv.Itoa(i)+"]", v, x, i, depth+1)
		}
	}
}

// cutLeaves cuts the longest strings of leaves to one common length so that
// at least need bytes are saved, and returns the cut fields as
// "path=original bytes", sorted; ok is false (nothing cut) when even
// fitMinKeep does not save enough.
func cutLeaves(leaves []strLeaf, need int) (cut []string, ok bool) {
	limit, ok := cutLength(leaves, need)
	if !ok {
		return nil, false
	}
	for _, l := range leaves {
		if str := l.get(); len(str) > limit {
			l.set(truncateUTF8(str, limit))
			cut = append(cut, l.path+"="+strconv.Itoa(len(str)))
		}
	}
	slices.Sort(cut)
	return cut, true
}

// cutLength is the longest length every string may keep so that cutting
// the longer ones saves at least need bytes: all long strings end up the
// same length, so the longest lose the most and short ones none. ok is
// false when even fitMinKeep does not save enough.
func cutLength(leaves []strLeaf, need int) (int, bool) {
	saved := func(limit int) int {
		n := 0
		for _, l := range leaves {
			if d := len(l.get()) - limit; d > 0 {
				n += d * max(l.copies, 1)
			}
		}
		return n
	}
	if saved(fitMinKeep) < need {
		return 0, false
	}
	lo, hi := fitMinKeep, fitMinKeep
	for _, l := range leaves {
		hi = max(hi, len(l.get()))
	}
	// saved falls as the limit grows: find the largest limit still saving
	// enough.
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if saved(mid) >= need {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo, true
}

// truncateUTF8 cuts s to at most n bytes without splitting a UTF-8
// sequence.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// noteCut records the cut fields in the annotations of m (an audit event, or
// an object's metadata), creating them when absent, so a reader sees the
// record was shortened and where.
func noteCut(m map[string]any, cut []string) {
	childMap(m, "annotations")[TruncatedFieldsAnnotation] = truncateUTF8(strings.Join(cut, ","), fitNoteMax)
}

// childMap returns m[key] as a map, putting an empty one there when it is
// absent or not a map.
func childMap(m map[string]any, key string) map[string]any {
	c, ok := m[key].(map[string]any)
	if !ok {
		c = map[string]any{}
		m[key] = c
	}
	return c
}
