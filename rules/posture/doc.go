// Package posture is kubesift's continuous benchmark engine: it keeps the
// current objects of each cluster (the inventory), judges them with the
// source: object rules of a rules.Set (the checks), and turns verdicts into
// findings with a lifecycle. It does no I/O; the processor, the Elasticsearch
// writer and `posture scan` call it.
//
// # The Engine contract
//
// Apply(cluster, object) puts an object into the inventory and returns the
// finding transitions (Decisions) the change causes: open, resolved or
// reopened. Delete resolves the findings of the deleted object and
// re-judges what depended on it. Replace sets a cluster's inventory to
// exactly the given objects and judges everything once: it is how the
// processor rebuilds from the compacted objects topic and how a one-shot
// scan runs, so both take the same code path.
//
// A Decision is emitted only when a finding's state changes. Applying an
// object whose uid and resourceVersion the inventory already holds is a
// no-op, and a verdict equal to the finding's current state is silent, so a
// replay of the current state yields nothing. A restarted process seeds the
// states it wrote before with Restore and then Replaces the inventory: a
// finding still open stays silent, one fixed meanwhile resolves. Every
// transition carries when its finding first opened and last opened
// (FirstSeen, OpenedAt: the Observed time of the object whose change opened
// it, else the engine's clock), a resolve included, and Restore takes them
// back with the states, so a writer that replaces a finding's state whole
// keeps them. Replace
// judges only once every object is in, so a namespace read before its
// NetworkPolicy does not open and resolve in the same rebuild.
//
// # Versions of transitions
//
// Each Decision carries a resourceVersion, and the invariant is: a later
// transition of a finding never carries a lower version than an earlier
// one, in the order the state index keeps (2 × resourceVersion, plus 1
// when resolved; see ecs.FindingVersion), so a reopen carries a greater
// resourceVersion than the resolve before it. Within one cluster
// resourceVersions come from one etcd counter, and a transition takes that
// of the change that caused it (the object's own in Apply and Replace, the
// changed object's for what depended on it) whenever that orders after the
// finding's previous transition. Otherwise the real cause is a change the
// engine cannot name: a dependency deleted while no process watched (seen
// only as its absence by Replace after Restore), a delete (Delete is given
// no resourceVersion, so it stamps the object's last one), objects
// delivered out of revision order. That change came after the previous
// transition, so the transition takes the previous one's resourceVersion
// when it resolves and the next revision when it reopens. A restarted
// process knows the transitions written before it only through Restore,
// so the invariant spans a restart when Restore is given the last state
// written of every finding (the state index's documents). Guarded by
// TestTransitionVersionsOrder and, over random sequences of Apply, Delete,
// outages and Restore+Replace, TestTransitionOrderRandomSequences and
// FuzzTransitionOrder.
//
// SetChecks swaps in a reloaded rule set's checks and judges every
// cluster's inventory with them once: findings of a removed check resolve,
// a new check's open, unchanged verdicts are silent.
//
// Methods are safe for concurrent use; each cluster has its own lock.
// Apply and Replace never panic on bad input: an object without kind, name
// or uid, or with a namespace where its kind has none, is an error naming
// the field (counted as invalid); kinds and versions the engine does not
// judge are counted as ignored and not kept, so a 1 MiB ConfigMap costs
// nothing. A check whose expression fails on an object is counted (the
// rule's error counter) and the object counts as passing it.
//
// # From records
//
// ObjectFromRecord turns an object record (the objects topic's, or one
// collector/objects.List built) into the Object Apply takes, or a tombstone
// into the arguments of Delete; identity comes from the record's key and id.
// ObjectsFromRecords does it for a listing, for Replace: `kubesift posture
// scan` and the processor's rebuild take that one path. Report groups a
// cluster's verdicts and open findings by CIS section for display.
//
// # Which objects are judged
//
// One finding per (check, object), id cluster/check/object-uid. Workload
// checks report on the top-most controller: Pods and Jobs whose
// ownerReferences name a controller are kept in the inventory (for joins)
// but not judged; ReplicaSets are not collected. Control-plane Pods (the
// kubernetes.io/config.mirror annotation) are judged only by checks tagged
// control-plane. Built-in roles and bindings (label
// kubernetes.io/bootstrapping: rbac-defaults) are never judged: changing them
// is an audit alert, not a posture finding.
//
// # Dependency tracking
//
// A check reads its own object and, through the inventory helpers of
// rules.Inventory, others. Each evaluation of a (check, object) pair runs
// with a reader that records a dependency key for every helper call:
//
//	network_policies(ns)        np/NS
//	service_account(ns, name)   obj/ServiceAccount/NS/NAME
//	subjects_bound_to(role)     bound/KIND/NS/NAME of the role
//	role_rules(role)            obj/KIND/NS/NAME of the role and of every
//	                            ClusterRole an aggregationRule pulled in
//	effective_rules(subject)    subj/S for the subject and the groups it is
//	                            in, plus the role_rules keys of every role bound
//	policy_controls()           policy
//
// The pair is filed under each key it read (the previous keys are dropped).
// A change to an object dirties the keys it can affect: obj/ of itself; np/
// of its namespace for a NetworkPolicy; policy when it is or was a policy
// control (an enforcing Namespace, a validating webhook or policy); for a binding, bound/ of its old and
// new roleRef and subj/ of its old and new subjects; for a ClusterRole, obj/
// of every aggregated ClusterRole whose selectors match its old or new
// labels. The changed object is judged by every check of its kind, and the
// pairs filed under the dirty keys are judged again; nothing else is. A
// NetworkPolicy created in namespace X therefore re-judges X's namespace
// checks and a ClusterRoleBinding change the workloads running as its
// subjects. Pairs that read nothing beyond their object (most workload
// checks) are not filed at all.
//
// # Score
//
// Score weighs each (check, object) verdict by the check's severity
// (critical 10, high 6, medium 3, low 1, info 0) and reports passed weight
// over judged weight, for the cluster and per namespace (a Namespace's own
// checks count for that namespace; cluster-scoped objects only for the
// cluster).
package posture
