package posture

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/kubesift/kubesift/record"
)

// ObjectFromRecord is the one way from an object record (source "object",
// as the objects source publishes it and as collector/objects.List returns
// it) to the engine: o is what Apply takes, or, when deleted is true (a
// tombstone, e.g. from record.ParseTombstone), the object whose findings
// Delete(r.Cluster.Name, o.Kind, o.Namespace, o.Name) resolves.
//
// Identity comes from the record's key and id, not from the body: they are
// what the topic is compacted by, so a body that disagrees with its own key
// cannot make the engine file it under another object. A record that is not
// an object record, or whose key, id or body is malformed, is an error
// wrapping ErrInvalid and naming the field.
func ObjectFromRecord(r *record.Record) (o Object, deleted bool, err error) {
	fail := func(field, format string, a ...any) error {
		return fmt.Errorf("posture: record %q: %w: %s: %s", r.Key, ErrInvalid, field, fmt.Sprintf(format, a...))
	}
	if r.Source != record.SourceObject {
		return Object{}, false, fail("source", "%q is not an object record", r.Source)
	}
	_, kind, ns, name, err := record.ParseObjectKey(r.Key)
	if err != nil {
		return Object{}, false, fail("key", "%v", err)
	}
	uid, rv, ok := strings.Cut(r.ID, ":")
	if !ok || uid == "" || rv == "" {
		return Object{}, false, fail("id", "%q is not uid:resourceVersion", r.ID)
	}
	o = Object{APIVersion: r.APIVersion, Kind: kind, Namespace: ns, Name: name, UID: uid, ResourceVersion: rv}
	if r.Deleted {
		return o, true, nil
	}
	if err := json.Unmarshal(r.Object, &o.Body); err != nil || o.Body == nil {
		return Object{}, false, fail("object", "not a JSON object (%v)", err)
	}
	return o, false, nil
}

// ObjectsFromRecords converts a listing (collector/objects.List) for
// Replace. A record that cannot be converted is left out and reported in
// errs, so one bad object costs only itself; tombstones are left out (a
// listing holds none, and Replace removes what is absent anyway).
func ObjectsFromRecords(recs []*record.Record) (objs []Object, errs []error) {
	objs = make([]Object, 0, len(recs))
	for _, r := range recs {
		o, deleted, err := ObjectFromRecord(r)
		switch {
		case err != nil:
			errs = append(errs, err)
		case !deleted:
			objs = append(objs, o)
		}
	}
	return objs, errs
}
