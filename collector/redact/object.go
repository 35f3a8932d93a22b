package redact

import (
	"fmt"
	"slices"

	"github.com/kubesift/kubesift/record"
)

// Object records (source object: the objects source's current state of a
// Pod, a Role, a Node, …) carry one object and no bodies. They are redacted
// by the rules for objects of every kind, exactly as a request body of a
// plain kind would be — the objects source never collects Secrets or
// ConfigMaps, so the secret-kind rules have nothing to do. An object over
// max_record_bytes has nothing to drop, so its longest strings are cut as
// for an audit record (fit.go), with the list of cut fields in the
// object's own annotation TruncatedFieldsAnnotation.

// objectKeep are the string fields an object record is never cut in: what
// names the object (its record ID and key are made of them).
var objectKeep = map[string]bool{
	"kind": true, "apiVersion": true, "metadata.name": true, "metadata.namespace": true,
	"metadata.uid": true, "metadata.resourceVersion": true,
}

func (s *Sanitizer) applyObject(rec *record.Record) error {
	if rec.Deleted {
		return nil // a tombstone has no object
	}
	if s.redact && !s.secretKindsOnly && mayNeedGeneric(rec.Object) {
		raw, kinds := s.redactBody(bodyPlain, rec.Object)
		if kinds != 0 {
			if raw == nil {
				return fmt.Errorf("redaction: re-encode %s: not a JSON object", rec.ID)
			}
			rec.Object = raw
			s.flagKinds(rec, kinds)
		}
	}
	if size := s.estimate(rec); size > s.maxRecord {
		return s.fitOrNotice(rec, size)
	}
	return nil
}

// flagKinds counts the kinds of redaction applied to rec and lists them in
// its flags.
func (s *Sanitizer) flagKinds(rec *record.Record, kinds kindSet) {
	for _, n := range kinds.names() {
		s.redacted.WithLabelValues(n).Inc()
		if !slices.Contains(rec.Flags.Redacted, n) {
			rec.Flags.Redacted = append(rec.Flags.Redacted, n)
		}
	}
	slices.Sort(rec.Flags.Redacted)
}

// fitObject cuts the longest strings of an object record so that its
// estimate is below max_record_bytes; it reports whether it fits now (when
// it does not, rec is unchanged).
func (s *Sanitizer) fitObject(rec *record.Record, size int) (bool, error) {
	v, err := parseJSON(rec.Object)
	if err != nil {
		return false, fmt.Errorf("size policy: parse %s: %w", rec.ID, err)
	}
	top, ok := v.(map[string]any)
	if !ok {
		return false, nil
	}
	var all []strLeaf
	for k, val := range top {
		collectStrings(&all, k, val, top, k, 0)
	}
	leaves := all[:0]
	for _, l := range all {
		if !objectKeep[l.path] {
			leaves = append(leaves, l)
		}
	}
	cut, ok := cutLeaves(leaves, size-s.maxRecord+fitMargin)
	if !ok {
		return false, nil
	}
	noteCut(childMap(top, "metadata"), cut)
	raw, err := encodeJSON(top)
	if err != nil {
		return false, fmt.Errorf("size policy: re-encode %s: %w", rec.ID, err)
	}
	rec.Object = raw
	rec.Flags.Truncated = true
	s.fitM.fitted.Inc()
	s.fitM.fields.Add(float64(len(cut)))
	return s.estimate(rec) <= s.maxRecord, nil
}
