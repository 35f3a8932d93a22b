// Package events is the Events collector: it ships every occurrence of every
// Kubernetes Event of a cluster — events.k8s.io/v1 and/or core/v1 — as a
// record.Record to a collector.Publisher, from exactly one collector per
// cluster (leader election), resuming after restarts and failovers without
// re-shipping the backlog and without losing what happened meanwhile.
//
// # Use
//
//	c, err := events.New(cfg.Collector.Events, cluster, clientset, publisher, registry, log)
//	go c.Run(ctx)          // returns after the session drained; then close the publisher
//	ready := c.Ready()     // nil for a follower, and for a leader once its informers synced
//
// # Path of an Event
//
//	API server ──list/watch──> shared informer (per API × namespace)
//	    ──handler: skip resync / watermark / max_age, queue the object──> bounded queue
//	    ──one worker: batch (max_records or max_wait), copy + enrich + record──> Publisher.Publish
//	    ──nil──> tracker (acknowledged) ──every interval──> watermark Lease
//
// session.go runs these stages for one leadership term: informers.go builds
// the informers, handler.go is the handler, ship.go and publish.go are the
// worker and its retries, and checkpoint.go loads and writes the watermark.
//
// The handler queues the object it was given, not a key: the informer cache
// keeps only the latest version, but every version is an occurrence (a
// repeating Event bumps count or series.count) with its own record ID
// "<uid>:<count>" (record.EventRecordID), shared by both Event APIs. Adds and
// updates are shipped; an update whose resourceVersion did not change (a
// resync or a relist of an unchanged Event) is skipped and counted. Informer
// objects are never modified: the worker deep-copies each one, sets its
// apiVersion/kind (the cache strips them) and its enrichment annotations,
// and builds the record from the copy. managedFields are dropped by the
// informer's transform.
//
// # Bounded, lossless hand-off
//
// The queue holds collector.events.queue_size versions. When it is full the
// handler waits (counted in queue_full_total and queue_blocked_seconds_total)
// — it never drops and never starts a goroutine per Event. Note the limit of
// that back-pressure: client-go's shared informer buffers notifications per
// handler without bound and its reflector keeps reading the watch, so a
// publisher that stays blocked grows the informer's buffer, not this queue.
// With the Kafka publisher's disk spool that only happens when the spool is
// full (ErrBackpressure), which the worker retries with backoff for as long
// as it lasts. Any other Publish error is retried three times; then the batch
// is published record by record and a record the publisher still refuses goes
// to the dead-letter topic (counted in dropped_total{reason="publish_rejected"})
// — unless it refuses every record of the batch, which points at the
// publisher rather than the records: then the batch is retried.
// An Event without a UID (no record ID possible) is dead-lettered too.
// Records and dead letters pass the collector's redaction (SetSanitizer;
// without one, the default configuration's): credential patterns in an
// Event's message or note are masked (docs/redaction.md).
//
// # Leader election
//
// With collector.events.leader_election.enabled every replica (a DaemonSet:
// one per node) campaigns for a coordination.k8s.io Lease through client-go's
// leaderelection; only the holder runs the Event and Pod informers and ships.
// Run never blocks the rest of `kubesift collect`: node-local sources run on
// every replica regardless. After a crash of the leader another replica takes
// over once lease_duration has passed since the last renewal (15 s by
// default); on a clean shutdown the leader first drains its queue (up to
// shutdown_grace), writes its watermark, and then releases the Lease
// (release_on_cancel), so a rolling update fails over at once. A leader that
// loses the Lease stops its informers, ships what it has queued, and
// campaigns again; one process never runs two sessions at once.
//
// # The watermark: what is persisted, where, and why it is safe
//
// Where: the annotation "kubesift.io/events-watermark" of a Lease the
// collector owns in its own namespace (watermark.lease_name, default
// kubesift-events-watermark), separate from the election Lease, whose
// renewals would otherwise conflict with every watermark write. A Lease
// rather than a ConfigMap keeps the collector's only write permission on
// Leases. The value is JSON: {"v":1,"rv":"<resourceVersion>",
// "event_time":…,"cluster_uid":…,"scope":…,"writer":…,"updated":…}.
//
// What: a resourceVersion W such that every Event version (object
// resourceVersion) <= W that the collector was handed has been acknowledged
// by the publisher (or was deliberately skipped). Event resourceVersions are
// etcd revisions; Kubernetes documents them as comparable integers within one
// resource (KEP-5504, k8s.io/apimachinery/pkg/util/resourceversion), and
// both Event APIs are views of one resource. Event time is not used for
// this: reporters set it with their own clocks and may report late, so a
// time watermark would either skip late Events or need a guess at a margin.
//
// How W is computed (tracker): per informer, the highest version delivered
// in watch order bounds W (client-go delivers in resourceVersion order since
// the InOrderInformers FIFO became GA; relists are applied to the store
// atomically with the AtomicFIFO gate, on by default — if either gate is
// off the watermark is not advanced at all); every version in the informer
// store that is not the last acknowledged version of its Event holds W
// below it (covering notifications still buffered in the informer); every
// version queued or being published holds W below it. W is written every
// watermark.interval when it advanced, and once more at the end of a
// session. Writes are optimistic (the Lease's resourceVersion) and never
// move W backwards, so a deposed leader that has not noticed yet cannot undo
// its successor's progress — and either's value is safe.
//
// On start (a restart or a new leader), with a watermark W of the same
// cluster (kube-system UID) and the same scope (namespaces and selectors —
// changing them invalidates the watermark, adding an API does not):
//
//   - the informers list fresh (a consistent read at L >= W), but tell the
//     reflector the list was at W, so it watches from W: the API server
//     replays every change after W — including count bumps that were
//     overwritten while no collector shipped — and each becomes a record;
//   - Events of the initial list at or below W are skipped
//     (skipped_total{reason="watermark"}); those above W are shipped (a
//     version may be shipped twice, with the same record ID);
//   - if W has left the API server's watch window (410 Gone), the reflector
//     relists: the Events as they are now are shipped, the occurrences
//     overwritten meanwhile are lost and counted in resume_expired_total;
//   - if L < W (a restored etcd, a Lease copied from another cluster) the
//     watermark is ignored.
//
// The watermark filters only the initial list of a session. Anything that
// arrives later — watch events, relists after "resourceVersion too old",
// Events created while the watch was down — is shipped; duplicates carry
// the same record ID and the Elasticsearch sink makes them one document.
//
// Without a usable watermark (the very first start, watermark disabled, or
// ignored as above) Events whose latest occurrence is older than max_age
// (default 1h, the API server's default Event TTL) are skipped and counted
// (skipped_total{reason="too_old"}); the rest of the cluster's backlog is
// shipped.
//
// # Enrichment
//
// With enrich.pods, a Pod informer (transformed to name, UID, node, owner
// references and the configured labels, to keep its memory small) feeds
// Events about Pods: the shipped copy gets the annotations kubesift.io/node,
// kubesift.io/owner-kind, kubesift.io/owner-name (the controller owner, e.g.
// the ReplicaSet) and kubesift.io/pod-labels (the selected labels as a JSON
// object). Lookups are cache reads, never GETs; a Pod not (or no longer)
// cached is counted in enrich_total{result="miss"}. The Pod cache is synced
// before the Event informers start (waiting at most a minute).
//
// # Cluster identity
//
// Every record carries record.Cluster: the configured name and the UID of
// the kube-system namespace, read once at start when the caller did not
// pass it.
//
// # Permissions
//
// testdata/rbac.yaml is the least-privilege RBAC: get/list/watch on events
// (core and events.k8s.io) and pods, get on the kube-system namespace, and
// get/create/update on Leases in the collector's namespace. Nothing else.
//
// # Metrics
//
// All prefixed kubesift_collector_events_: seen_total{api},
// added_total{api}, updated_total{api}, skipped_total{reason},
// shipped_total, dropped_total{reason}, dead_letters_total,
// unshipped_on_stop_total, publish_retries_total{reason},
// publish_duration_seconds, batch_records, leader, leader_terms_total,
// watch_restarts_total{api}, relists_total{api}, resume_expired_total,
// last_event_timestamp_seconds{cluster}, queue_depth, queue_full_total,
// queue_blocked_seconds_total, watermark_resource_version,
// watermark_timestamp_seconds, watermark_writes_total{result},
// watermark_ignored_total{reason}, enrich_total{result}.
//
// # Limits
//
//   - An Event that repeats while no collector ships (between a crash and
//     the failover) is recovered only while the API server can replay from
//     the watermark (its watch cache window, typically minutes); beyond
//     that only its latest count is shipped.
//   - An Event created and deleted within such a gap is lost likewise
//     (Event TTL is an hour by default, so this needs a long outage).
//   - A quiet stream (no Event for longer than the API server's watch
//     window) leaves the watermark at the resourceVersion of its last Event;
//     a restart then resumes from a resourceVersion the API server no longer
//     has, the reflector relists (nothing is lost or re-shipped), and
//     resume_expired_total counts it although nothing was overwritten.
//   - Each watermark computation lists the informer stores (O(Events) every
//     watermark.interval; tens of milliseconds for 100,000 Events).
//   - Owner enrichment names the Pod's direct controller (e.g. a
//     ReplicaSet), not the Deployment above it: that would need a
//     ReplicaSet informer and its permission.
package events
