package events

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
)

// AnnotationWatermark is the annotation of the watermark Lease that holds
// the encoded Watermark.
const AnnotationWatermark = "kubesift.io/events-watermark"

// errBadWatermark marks a stored annotation that does not parse.
var errBadWatermark = errors.New("malformed watermark annotation")

// watermarkVersion is the version of the annotation's JSON.
const watermarkVersion = 1

// Watermark is what a collector persists about its progress: every Event
// version (object resourceVersion) up to ResourceVersion that the collector
// was ever handed has been shipped and acknowledged by the publisher. See
// the package doc for why this is safe.
type Watermark struct {
	// ResourceVersion is the Event resourceVersion (etcd revision) up to
	// which everything was shipped.
	ResourceVersion uint64
	// EventTime is the latest event time shipped (informational; exported as
	// a metric by the next leader).
	EventTime time.Time
	// ClusterUID is the kube-system namespace UID the watermark belongs to;
	// a watermark of another cluster (restored etcd, copied Lease) is ignored.
	ClusterUID string
	// Scope fingerprints the watched namespaces and selectors; a watermark
	// written for another scope is ignored (see scopeOf).
	Scope string
	// Writer is the identity of the collector that wrote it.
	Writer string
	// Updated is when it was written.
	Updated time.Time
}

type watermarkJSON struct {
	V          int    `json:"v"`
	RV         string `json:"rv"`
	EventTime  string `json:"event_time,omitempty"`
	ClusterUID string `json:"cluster_uid,omitempty"`
	Scope      string `json:"scope,omitempty"`
	Writer     string `json:"writer,omitempty"`
	Updated    string `json:"updated,omitempty"`
}

// Format encodes w for the annotation.
func (w Watermark) Format() string {
	j := watermarkJSON{
		V: watermarkVersion, RV: strconv.FormatUint(w.ResourceVersion, 10),
		ClusterUID: w.ClusterUID, Scope: w.Scope, Writer: w.Writer,
	}
	if !w.EventTime.IsZero() {
		j.EventTime = w.EventTime.UTC().Format(time.RFC3339Nano)
	}
	if !w.Updated.IsZero() {
		j.Updated = w.Updated.UTC().Format(time.RFC3339Nano)
	}
	b, _ := json.Marshal(j) // strings only: cannot fail
	return string(b)
}

// maxWatermarkBytes bounds the annotation ParseWatermark accepts; a real one
// is ~250 bytes.
const maxWatermarkBytes = 4096

// ParseWatermark decodes the annotation. It is strict about what the
// collector relies on (version, a well-formed resourceVersion, timestamps)
// so that a hand-edited or foreign annotation is reported, never guessed at.
func ParseWatermark(s string) (Watermark, error) {
	if len(s) > maxWatermarkBytes {
		return Watermark{}, fmt.Errorf("watermark: %d bytes, more than %d", len(s), maxWatermarkBytes)
	}
	var j watermarkJSON
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return Watermark{}, fmt.Errorf("watermark: %w", err)
	}
	if dec.More() {
		return Watermark{}, errors.New("watermark: trailing data after the JSON object")
	}
	if j.V != watermarkVersion {
		return Watermark{}, fmt.Errorf("watermark: version %d, want %d", j.V, watermarkVersion)
	}
	rv, err := parseRV(j.RV)
	if err != nil {
		return Watermark{}, fmt.Errorf("watermark: rv: %w", err)
	}
	w := Watermark{ResourceVersion: rv, ClusterUID: j.ClusterUID, Scope: j.Scope, Writer: j.Writer}
	if j.EventTime != "" {
		if w.EventTime, err = parseStamp(j.EventTime); err != nil {
			return Watermark{}, fmt.Errorf("watermark: event_time: %w", err)
		}
	}
	if j.Updated != "" {
		if w.Updated, err = parseStamp(j.Updated); err != nil {
			return Watermark{}, fmt.Errorf("watermark: updated: %w", err)
		}
	}
	return w, nil
}

// parseStamp parses an RFC 3339 time and returns it in UTC. A time whose
// UTC year leaves 0000–9999 (year 0000 with a positive offset) is refused:
// Format could not write it back in a form this parser reads, and the next
// collector would then fail on the annotation this one wrote.
func parseStamp(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return time.Time{}, fmt.Errorf("%q is year %d in UTC, outside 0000-9999", s, y)
	}
	return t, nil
}

// parseRV parses a resourceVersion the way
// k8s.io/apimachinery/pkg/util/resourceversion compares them: a positive
// decimal integer without leading zeros. Kubernetes documents Event
// resourceVersions of one resource as comparable this way (KEP-5504); the
// two Event APIs are views of one resource in one storage, so their
// versions compare too.
func parseRV(s string) (uint64, error) {
	if s == "" || s[0] == '0' || len(s) > 20 {
		return 0, fmt.Errorf("%q is not a positive integer resourceVersion", s)
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a positive integer resourceVersion", s)
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a positive integer resourceVersion: %w", s, err)
	}
	return v, nil
}

// scopeOf fingerprints what the informers see: namespaces and selectors.
// The set of APIs is left out on purpose — both APIs show the same Events
// with the same record IDs — so adding core/v1 keeps the watermark.
func scopeOf(namespaces []string, fieldSelector, labelSelector string) string {
	ns := slices.Clone(namespaces)
	slices.Sort(ns)
	h := sha256.New()
	var b bytes.Buffer
	b.WriteString("ns=" + strings.Join(ns, ","))
	b.WriteString("\x00fs=" + fieldSelector)
	b.WriteString("\x00ls=" + labelSelector)
	h.Write(b.Bytes())
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
}

// leaseStore keeps the watermark in an annotation of a Lease in the
// collector's namespace. Writes use the Lease's resourceVersion (optimistic
// concurrency) and never move the watermark backwards, so an old leader that
// has not yet noticed it lost the election cannot undo the new leader's
// progress; either value is safe (see the package doc), the larger only
// saves re-shipping.
type leaseStore struct {
	leases    coordinationv1client.LeasesGetter
	namespace string
	name      string
	identity  string
}

// load returns the watermark, found=false when the Lease or its annotation
// does not exist, or an error (including a malformed annotation, which the
// caller logs and treats as absent).
func (s *leaseStore) load(ctx context.Context) (w Watermark, found bool, err error) {
	l, err := s.leases.Leases(s.namespace).Get(ctx, s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Watermark{}, false, nil
	}
	if err != nil {
		return Watermark{}, false, fmt.Errorf("get watermark lease %s/%s: %w", s.namespace, s.name, err)
	}
	a, ok := l.Annotations[AnnotationWatermark]
	if !ok {
		return Watermark{}, false, nil
	}
	w, err = ParseWatermark(a)
	if err != nil {
		return Watermark{}, false, fmt.Errorf("lease %s/%s: %w: %w", s.namespace, s.name, errBadWatermark, err)
	}
	return w, true, nil
}

// save writes w unless the stored watermark (same cluster and scope) is
// already at or beyond it. It reports whether it wrote.
func (s *leaseStore) save(ctx context.Context, w Watermark) (bool, error) {
	leases := s.leases.Leases(s.namespace)
	for attempt := 0; ; attempt++ {
		l, err := leases.Get(ctx, s.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
				Name: s.name, Namespace: s.namespace,
				Labels:      map[string]string{"app.kubernetes.io/name": "kubesift", "app.kubernetes.io/component": "events-watermark"},
				Annotations: map[string]string{AnnotationWatermark: w.Format()},
			}}
			l.Spec.HolderIdentity = &s.identity
			_, err = leases.Create(ctx, l, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) && attempt < 3 {
				continue
			}
			if err != nil {
				return false, fmt.Errorf("create watermark lease %s/%s: %w", s.namespace, s.name, err)
			}
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("get watermark lease %s/%s: %w", s.namespace, s.name, err)
		}
		if a, ok := l.Annotations[AnnotationWatermark]; ok {
			if old, perr := ParseWatermark(a); perr == nil && old.ClusterUID == w.ClusterUID &&
				old.Scope == w.Scope && old.ResourceVersion >= w.ResourceVersion {
				return false, nil
			}
		}
		if l.Annotations == nil {
			l.Annotations = map[string]string{}
		}
		l.Annotations[AnnotationWatermark] = w.Format()
		l.Spec.HolderIdentity = &s.identity
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) && attempt < 3 {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("update watermark lease %s/%s: %w", s.namespace, s.name, err)
		}
		return true, nil
	}
}
