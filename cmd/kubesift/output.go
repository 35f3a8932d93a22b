package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

// outputFormat is the -o/--output flag of a command that prints data. Every
// such command offers json (TestDataCommandsPrintJSON parses what each
// prints); the value is checked as the flags are parsed, so a wrong one is
// a usage error like an unknown flag.
type outputFormat struct {
	value   string
	allowed []string
}

func (o *outputFormat) String() string { return o.value }

func (o *outputFormat) Set(s string) error {
	if !slices.Contains(o.allowed, s) {
		return fmt.Errorf("%q is not one of %s", s, strings.Join(o.allowed, ", "))
	}
	o.value = s
	return nil
}

func (o *outputFormat) Type() string { return "format" }

func (o *outputFormat) json() bool { return o.value == "json" }

// bind adds -o/--output to cmd: formats are the accepted values, the first
// one the default; json is added when missing.
func (o *outputFormat) bind(cmd *cobra.Command, formats ...string) {
	if !slices.Contains(formats, "json") {
		formats = append(formats, "json")
	}
	o.allowed, o.value = formats, formats[0]
	cmd.Flags().VarP(o, "output", "o", "output format: "+strings.Join(formats, " or "))
}

// writeJSON prints v as indented JSON: a command's whole answer in one
// document (commands printing a stream print one compact line per item).
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
