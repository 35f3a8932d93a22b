package record

import (
	"fmt"
	"strings"
	"time"
)

// ObjectRef names one version of an API object.
type ObjectRef struct {
	APIVersion      string
	Kind            string
	Namespace       string
	Name            string
	UID             string
	ResourceVersion string
}

func (o ObjectRef) check() error {
	switch {
	case o.APIVersion == "":
		return &FieldError{Field: "apiVersion", Msg: "missing"}
	case o.Kind == "":
		return &FieldError{Field: "kind", Msg: "missing"}
	case o.Name == "":
		return &FieldError{Field: "metadata.name", Msg: "missing"}
	case o.UID == "":
		return &FieldError{Field: "metadata.uid", Msg: "missing"}
	case o.ResourceVersion == "":
		return &FieldError{Field: "metadata.resourceVersion", Msg: "missing"}
	case strings.Contains(o.Kind, "/"), strings.Contains(o.Namespace, "/"):
		// The key splits on "/": kinds and namespaces never contain one.
		return &FieldError{Field: "kind", Msg: "contains '/'"}
	}
	return nil
}

// NewObject builds the Record of one version of an object. raw is the
// object's JSON (already stripped and redacted by the caller); observed is
// when the change was seen and becomes both event_time and observed_time.
func NewObject(ref ObjectRef, raw []byte, c Cluster, observed time.Time) (*Record, error) {
	if err := ref.check(); err != nil {
		return nil, err
	}
	if len(raw) == 0 || raw[0] != '{' {
		return nil, &FieldError{Field: "object", Msg: "missing or not a JSON object"}
	}
	r := newObjectRecord(ref, c, observed)
	r.Object = raw
	return r, nil
}

// NewObjectTombstone builds the Record of a deleted object: ref is its last
// version seen. It has no Object; the publisher sends it as a Kafka
// tombstone (see the package doc).
func NewObjectTombstone(ref ObjectRef, c Cluster, observed time.Time) (*Record, error) {
	if err := ref.check(); err != nil {
		return nil, err
	}
	r := newObjectRecord(ref, c, observed)
	r.Deleted = true
	return r, nil
}

func newObjectRecord(ref ObjectRef, c Cluster, observed time.Time) *Record {
	t := observed.UTC()
	return &Record{
		Schema:       SchemaVersion,
		ID:           ObjectRecordID(ref.UID, ref.ResourceVersion),
		Cluster:      c,
		Source:       SourceObject,
		APIVersion:   ref.APIVersion,
		EventTime:    t,
		ObservedTime: t,
		Key:          KeyObjectRef(c, ref.Kind, ref.Namespace, ref.Name),
	}
}

// ObjectRecordID is the deterministic ID of one version of an object.
func ObjectRecordID(uid, resourceVersion string) string {
	return uid + ":" + resourceVersion
}

// KeyObjectRef is the message key of an object record: cluster, kind,
// namespace (empty for cluster-scoped kinds) and name. It names the object's
// place, so compaction keeps only its current state.
func KeyObjectRef(c Cluster, kind, namespace, name string) string {
	return c.Name + "/" + kind + "/" + namespace + "/" + name
}

// ParseObjectKey splits a KeyObjectRef key. Cluster names never contain
// "/"; names may (none of the collected kinds allows it, but the last
// field takes the rest, so no key is misread).
func ParseObjectKey(key string) (cluster, kind, namespace, name string, err error) {
	parts := strings.SplitN(key, "/", 4)
	if len(parts) != 4 || parts[0] == "" || parts[1] == "" || parts[3] == "" {
		return "", "", "", "", &FieldError{Field: "key", Msg: fmt.Sprintf("%q is not cluster/kind/namespace/name", key)}
	}
	return parts[0], parts[1], parts[2], parts[3], nil
}

// ParseTombstone is what a consumer reads from a message of the objects
// topic whose value is nil: the deleted object's record, with Deleted set,
// ID, Source, Cluster.Name and Key from the headers and key. It fails when
// the key is not an object key or the headers are not an object record's.
func ParseTombstone(key []byte, headers []Header) (*Record, error) {
	cluster, _, _, _, err := ParseObjectKey(string(key))
	if err != nil {
		return nil, err
	}
	r := &Record{Schema: SchemaVersion, Key: string(key), Cluster: Cluster{Name: cluster}, Deleted: true}
	for _, h := range headers {
		switch h.Key {
		case HeaderID:
			r.ID = string(h.Value)
		case HeaderSource:
			r.Source = Source(h.Value)
		case HeaderCluster:
			if string(h.Value) != cluster {
				return nil, &FieldError{Field: "header " + HeaderCluster, Msg: fmt.Sprintf("%q differs from the key's cluster %q", h.Value, cluster)}
			}
		}
	}
	switch {
	case r.Source != SourceObject:
		return nil, &FieldError{Field: "header " + HeaderSource, Msg: fmt.Sprintf("%q: only object records have tombstones", r.Source)}
	case r.ID == "":
		return nil, &FieldError{Field: "header " + HeaderID, Msg: "missing"}
	}
	return r, nil
}
