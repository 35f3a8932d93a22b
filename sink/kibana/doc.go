// Package kibana holds kubesift's Kibana saved objects as Go values and the
// client that imports them.
//
// The spec: every data view, saved search, visualization and dashboard is
// a value of this package (dashboards.go), built from a few declarative
// parts — a data view, a query of field clauses, aggregations — so that one
// description yields both the Kibana object (the KQL, the visState) and the
// equivalent Elasticsearch search (Panel.Search). Tests hold the fields a
// panel names against the mapping sink/ecs installs and run every panel's
// search on the real Elasticsearch; deployments/kibana/kubesift.ndjson is
// Generate's output for the default configuration, and a test fails while
// the committed file differs from a fresh generation.
//
// The contract of Generate: the same configuration gives the same bytes
// (object ids are fixed strings, never random), every reference resolves to
// an object of the same output, and data view titles are the stream and
// index names of the configuration, so `kubesift setup kibana -c` follows a
// renamed stream.
//
// The contract of Import: one multipart POST of the NDJSON to Kibana's
// saved-objects import API with overwrite=true, so a second run replaces the
// objects instead of duplicating them; a refused import (401, 403, unknown
// space, a Kibana too old for the objects, any object Kibana rejects) is an
// error naming the cause, and 429/5xx/network failures are retried with the
// sink's one retry wrapper. docs/kibana.md lists what each dashboard shows.
package kibana

//go:generate go run ./gen ../../deployments/kibana/kubesift.ndjson
