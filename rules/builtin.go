package rules

import "embed"

// builtinFS holds the built-in rule pack, compiled into the binary so that
// kubesift detects out of the box; users layer their own directories on top.
//
//go:embed builtin
var builtinFS embed.FS
