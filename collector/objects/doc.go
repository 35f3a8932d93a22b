// Package objects is the objects source: it publishes the current state of
// the API objects a posture check reads — Namespaces, Pods, Deployments,
// StatefulSets, DaemonSets, Jobs, CronJobs, Services, Ingresses,
// NetworkPolicies, ServiceAccounts, Roles, ClusterRoles, RoleBindings,
// ClusterRoleBindings, Mutating/ValidatingWebhookConfigurations,
// ValidatingAdmissionPolicies and Nodes — as record.Records of source
// "object" to the compacted topic kafka.topics.objects, from exactly one
// collector per cluster (leader election). Never Secrets: the collector has
// no read on them (deployments/ RBAC), and no kind here lists them.
//
// # Use
//
//	src, err := objects.New(cfg.Collector.Objects, cluster, clientset, publisher, sanitizer, registry, log)
//	go src.Run(ctx)       // returns after the session drained; then close the publisher
//	ready := src.Ready()  // nil for a follower, and for a leader once its informers synced
//
// # The contract
//
// The topic holds, per key (record.KeyObjectRef: cluster/kind/namespace/
// name), the latest version of the object this source saw, or its tombstone:
//
//   - add, or an update with a new resourceVersion: a record with ID
//     "<uid>:<resourceVersion>" and the object as the informer cached it —
//     apiVersion and kind set, managedFields dropped, a Node's
//     status.conditions[*].lastHeartbeatTime cleared (kinds.go) — redacted
//     and cut to max_record_bytes by the collector's Sanitizer.
//   - delete: a tombstone (key, nil value; record package doc) carrying the
//     ID of the object's last version.
//   - an update whose resourceVersion is unchanged (informer resync, relist)
//     is not published (skipped_total{reason="resync"}); neither is one
//     whose published form equals the last one published but for
//     resourceVersion (skipped_total{reason="unchanged"}): Node heartbeats,
//     a change of managedFields alone.
//
// A record is published only after its Publish returned nil (durable, per
// the collector contract); the worker remembers what it published only
// then, so a batch that fails is built again from the cache's then-current
// state.
//
// # Path of a change
//
//	API server ──list/watch──> typed shared informers (transform: strip) ──> cache
//	    ──handler: skip same resourceVersion; queue the key──> keyed workqueue (bounded)
//	    ──one worker: batch (batch.max_records, batch.max_wait), read the cache──> Publisher
//
// The queue holds keys, not versions (the sample-controller pattern): a burst
// of updates to one object while its key waits publishes its latest state
// once. This loses nothing the topic needs — it keeps only the latest state
// per key anyway. The queue is bounded by queue_size distinct keys: a change
// to an object not already queued, arriving when it is full, is dropped
// (dropped_total{reason="queue_full"}, logged once per overflow). Dropped
// changes are recovered: once the queue is empty the worker re-queues every
// cached object and every published key the caches no longer hold
// (requeued_total); unchanged ones cost a hash and publish nothing.
//
// Bad input never stops the source: an object that cannot be encoded or
// lacks a field its record needs (uid, resourceVersion), a record the
// Sanitizer cannot redact, or a queued key of an unknown kind goes to the
// dead-letter topic through PublishDeadLetters (scrubbed by the Sanitizer)
// and is counted in dead_letters_total{reason}; the rest of its batch is
// published.
//
// # Leader election and restarts
//
// Like the Events source, every replica campaigns for a Lease of its own
// (collector.objects.leader_election, default kubesift-objects-leader,
// through collector.Campaign); only the holder runs informers. A session
// starts with nothing published, so its initial lists publish every
// current object once — with the same ID as its last record when it did
// not change, which the Elasticsearch sink's deterministic _id makes one
// document and compaction makes one message. Nothing else is republished.
// Records of the initial lists carry record.Record.InitialList (client-go's
// isInInitialList), unless a later change of the object was queued before
// the record was built: a consumer can tell an object that may predate the
// session from one whose change the session watched.
// An object deleted while no leader ran keeps its last record in the topic
// (no watch saw the delete, and the source does not read the topic back to
// find such keys); the consumer that rebuilds an inventory from the topic
// must reconcile it against a later record's absence — this package cannot.
//
// Kinds the API server does not serve (ValidatingAdmissionPolicy before
// Kubernetes 1.30) are skipped with a warning and counted in
// kinds_unavailable_total{kind}.
//
// # Metrics
//
// All prefixed kubesift_collector_objects_: notifications_total{kind,op},
// skipped_total{reason}, published_total{kind,type},
// dead_letters_total{reason}, dropped_total{reason}, requeued_total,
// kinds_unavailable_total{kind}, publish_retries_total{reason},
// queue_depth, leader.
//
// # One-shot listing
//
// List reads every collected kind once (Limit/Continue pages, unserved
// optional kinds skipped and named) and returns the records this source
// would publish for the objects, built by the same transform, objectRecord
// and Sanitizer; an object that cannot be made a record is returned as a
// named error beside the others. `kubesift posture scan` judges its result,
// so a scan and the continuous path see the same objects.
//
// # What is not here
//
// The checks (rules with source: object), the processor's inventory and
// findings are built on this topic elsewhere; this package only publishes.
package objects
