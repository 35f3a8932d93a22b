// Package obs is what every long-running subcommand needs to be observed and
// to stay up under load, below every room:
//
//   - Server (server.go): the HTTP server of /metrics (Prometheus), /healthz
//     (the process is alive) and /readyz (every registered readiness check
//     passes, e.g. "Kafka reachable", "caches synced").
//   - Register and RegisterShared (shared.go): metric registration, where a
//     nil registry keeps a component's metrics private and several sources
//     of one process can count into the same series.
//   - LogLimiter (shared.go): at most one log line per kind of repeated
//     warning per LogInterval; the metrics count every occurrence.
//   - Limits (limits.go): the timeouts and connection cap every kubesift HTTP
//     listener, the metrics server included, takes.
//   - BearerToken and Token (bearer.go): bearer-header parsing and a
//     constant-time token check for every authenticated listener.
//   - StallWatch (stall.go): fails /readyz and sets kubesift_source_stalled
//     for a source whose input waits while its position does not move.
//   - ApplyMemoryLimit (memlimit.go): the Go runtime's soft memory limit,
//     unless GOMEMLIMIT is set; ApplyBatchGC, the GC percent of a command
//     that reads a file through, unless GOGC is set.
package obs
