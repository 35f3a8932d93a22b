package record

import (
	"encoding/binary"
	"math/bits"
)

// commonStrings are strings nearly every audit event repeats: API versions,
// levels, stages, verbs, the resources and groups kube-apiserver names most,
// the authorization annotations and their values. The decoder hands out
// these shared copies instead of allocating one per event (see intern).
var commonStrings = []string{
	"Event", "audit.k8s.io/v1", "audit.k8s.io/v1beta1", "v1",
	"None", "Metadata", "Request", "RequestResponse",
	"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic",
	"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy",
	"pods", "configmaps", "secrets", "namespaces", "services", "endpoints", "events", "nodes",
	"serviceaccounts", "deployments", "replicasets", "daemonsets", "statefulsets", "jobs", "cronjobs",
	"leases", "endpointslices", "roles", "rolebindings", "clusterroles", "clusterrolebindings",
	"customresourcedefinitions", "persistentvolumeclaims", "persistentvolumes", "limitranges",
	"resourcequotas", "networkpolicies", "ingresses", "tokenreviews", "subjectaccessreviews",
	"selfsubjectaccessreviews", "selfsubjectrulesreviews", "status", "log", "exec", "attach",
	"portforward", "token", "binding", "eviction", "scale",
	"apps", "batch", "rbac.authorization.k8s.io", "coordination.k8s.io", "discovery.k8s.io",
	"networking.k8s.io", "policy", "authentication.k8s.io", "authorization.k8s.io",
	"apiextensions.k8s.io", "admissionregistration.k8s.io", "storage.k8s.io", "events.k8s.io",
	"default", "kube-system", "kube-public", "kube-node-lease",
	"system:authenticated", "system:unauthenticated", "system:masters", "system:nodes",
	"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:anonymous",
	"system:apiserver", "system:kube-controller-manager", "system:kube-scheduler",
	"authorization.k8s.io/decision", "authorization.k8s.io/reason", "allow", "forbid",
	"pod-security.kubernetes.io/enforce-policy", "pod-security.kubernetes.io/audit-violations",
	"Success", "Failure", "NotFound", "AlreadyExists", "Conflict", "Forbidden", "Unauthorized", "Invalid",
}

// commonTable finds a common string by a hash of its length and its first
// and last eight bytes, chosen at start so that no two common strings share
// a slot: a lookup is one multiply and at most one comparison, where a map
// hashes every byte and probes, for some fifteen strings of every event.
// The table never changes, so readers need no lock.
var commonTable = newInternTable(commonStrings)

// internSlots is the size of an internTable's index; a power of two, large
// enough that a collision-free seed is found within a few dozen tries for
// commonStrings (the audit keys need fewer).
const internSlots = 2048

type internTable struct {
	seed  uint64
	index [internSlots]uint8 // 1 + position in strs; 0: empty
	strs  []string
}

func newInternTable(strs []string) *internTable {
	if len(strs) > 255 {
		panic("record: too many common strings for an internTable")
	}
	for seed := uint64(1); seed <= maxInternSeeds; seed++ {
		t := &internTable{seed: seed, strs: strs}
		if t.fill() {
			return t
		}
	}
	// Two strings of one length and the same first and last eight bytes
	// share a slot whatever the seed.
	panic("record: no collision-free seed for the common strings")
}

// maxInternSeeds bounds the search; commonStrings needs a few dozen.
const maxInternSeeds = 100000

// fill indexes every string, reporting false on the first collision.
func (t *internTable) fill() bool {
	for i, s := range t.strs {
		h := t.slot([]byte(s))
		if t.index[h] != 0 {
			return false
		}
		t.index[h] = uint8(i + 1)
	}
	return true
}

func (t *internTable) slot(b []byte) uint64 {
	var first, last uint64
	switch n := len(b); {
	case n >= 8:
		first, last = binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[n-8:])
	case n > 0:
		for _, c := range b {
			first = first<<8 | uint64(c)
		}
	}
	h := (first ^ bits.RotateLeft64(last, 29) ^ uint64(len(b))) * (t.seed*0x9E3779B97F4A7C15 | 1)
	return h >> (64 - internSlotBits)
}

// internSlotBits is log2(internSlots).
const internSlotBits = 11

// lookup returns the table's string equal to b.
func (t *internTable) lookup(b []byte) (string, bool) {
	if i := t.position(b); i >= 0 {
		return t.strs[i], true
	}
	return "", false
}

// position returns the position in strs of the string equal to b, or -1.
func (t *internTable) position(b []byte) int {
	if i := int(t.index[t.slot(b)]) - 1; i >= 0 && t.strs[i] == string(b) {
		return i
	}
	return -1
}

// intern returns b as a string, the shared copy when it is a common one.
// The lookup does not allocate.
func intern(b []byte) string {
	if s, ok := commonTable.lookup(b); ok {
		return s
	}
	return string(b)
}
