// Package rbacusage turns the authorization reasons of audit records into
// least-privilege evidence: which (binding, role, subject) allowed which
// requests, and when last.
//
// # The contract
//
// ParseReason reads one authorization.k8s.io/reason annotation (every form
// kube-apiservers since 1.10 write; FuzzParseReason guards that it never
// panics and that what it accepts prints, in the current form, back to a
// reason that parses to the same grant).
// A Table is one cluster's usage state: Observe merges a use, and merging
// is idempotent and order-free (the latest time wins per tuple and per
// pair), so a re-read of the same audit records, a restore from the store
// and a live observation can be applied in any order and any number of
// times with one result. TakeChanged hands the store exactly the tuples to
// write. Suggest derives the narrowest role that allows every pair used in
// a window; Unused names the broad grants (wildcards, secrets) a window did
// not need.
//
// The package does no I/O and keeps no clock: the posture engine owns one
// Table per cluster (the inventory's rbac_usage helper reads it) and the
// processor's posture consumer feeds it and persists it (docs/architecture.md,
// "RBAC usage").
package rbacusage
