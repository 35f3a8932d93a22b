// Package arch holds no code: its tests enforce the direction imports run
// in, so that the rule in docs/architecture.md is checked on every go test
// run instead of by review, and keep go-elasticsearch's root package and
// typed API out of the kubesift binary.
//
// Layers, bottom to top:
//
//	0  record, internal/...   the language every room speaks, small helpers
//	1  rules
//	2  sink/..., collector/... siblings: neither imports the other
//	3  pipeline/...
//	4  cmd/..., hack/..., test/...
//
// A package may import its own room and any room on a lower layer; within
// layer 0, record and internal may import each other. A helper two rooms on
// one layer need goes down to layer 0 (internal/match, internal/backoff),
// never sideways. Test files follow the same rule, so a test cannot pull a
// higher room into a lower one.
package arch
