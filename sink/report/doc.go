// Package report builds report.html: one self-contained page (inline CSS
// and SVG drawn here, no script, no URL of any kind) that pictures what a
// kubesift store holds without Kibana — the alerts timeline by severity,
// the top rules with their MITRE ATT&CK tactics, the top actors, Events by
// reason, the posture score and failing checks, and the highest-severity
// alerts. docs/report.md describes the page.
//
// # The contract
//
// A Source aggregates one store into a Summary; Render writes the page of
// a Summary. There are two sources and they must agree document for
// document (TestSourcesAgree checks it against the real Elasticsearch):
//
//   - Dir reads the NDJSON folder `kubesift run` writes (sink/ndjson: one
//     <index>.ndjson per data stream or index, the sink/ecs documents
//     unchanged), streaming each file once;
//   - ES asks Elasticsearch for the same figures with aggregations over the
//     audit and Events data streams, the alerts index, the findings index
//     and the posture scores stream.
//
// Both keep memory bounded whatever the store holds: the top lists are cut
// at fixed lengths (the rest is summed as "other"), the timeline has at
// most MaxBuckets buckets, whose width is the smallest of a fixed ladder
// that fits the alerts' time span (so both sources choose the same), and
// Dir keeps at most maxKeys distinct values per dimension and maxFindings
// finding states, noting in the Summary what it had to fold away.
//
// A line Dir cannot read (not JSON, over maxLineBytes) is skipped, counted
// in kubesift_report_lines_skipped_total{index,reason} and named by file
// and line in the Summary, which the page shows; the store itself is only
// read, so nothing is dead-lettered or changed.
//
// # The digest
//
// ES.Digest aggregates one cluster's figures over a window for the daily
// digest (pipeline.Digester) and `kubesift report --digest`: the posture
// score and its change, findings opened and resolved (the transitions
// stream), top alerts by rule, Event warnings by reason, and records
// indexed. RenderDigests writes them as text, JSON or a self-contained
// page. Only ES has a digest.
//
// Record content is attacker-controlled (a user name, a rule message built
// from a request): Render passes every string through html/template's
// contextual escaping and clips long ones, and the page carries a
// Content-Security-Policy that forbids scripts and every fetch, so a
// string that escaped anyway could still neither run nor load anything.
package report
