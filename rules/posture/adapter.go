package posture

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/kubesift/kubesift/record"
)

// ObjectFromRecord is the Object of an object record (source: object, as
// the collector's objects source publishes it): kind, namespace and name
// from the key, uid and resourceVersion from the record id
// (record.ObjectRecordID), the body decoded from the record's object. A
// tombstone has no object to judge; its key is all a consumer needs
// (Engine.Delete). Errors name the field.
func ObjectFromRecord(r *record.Record) (Object, error) {
	switch {
	case r == nil:
		return Object{}, fmt.Errorf("posture: object record: nil")
	case r.Source != record.SourceObject:
		return Object{}, fmt.Errorf("posture: object record %s: source: %q is not %q", r.ID, r.Source, record.SourceObject)
	case r.Deleted:
		return Object{}, fmt.Errorf("posture: object record %s: a tombstone has no object", r.ID)
	}
	_, kind, ns, name, err := record.ParseObjectKey(r.Key)
	if err != nil {
		return Object{}, fmt.Errorf("posture: object record %s: %w", r.ID, err)
	}
	uid, rv, ok := strings.Cut(r.ID, ":")
	if !ok || uid == "" || rv == "" {
		return Object{}, fmt.Errorf("posture: object record %s: id: %q is not uid:resourceVersion", r.ID, r.ID)
	}
	var body map[string]any
	if err := json.Unmarshal(r.Object, &body); err != nil || body == nil {
		return Object{}, fmt.Errorf("posture: object record %s: object: not a JSON object", r.ID)
	}
	return Object{APIVersion: r.APIVersion, Kind: kind, Namespace: ns, Name: name, UID: uid, ResourceVersion: rv, Body: body}, nil
}
