// Command kubesift ships Kubernetes audit records and Events from many
// clusters through Kafka into Elasticsearch, sifts them with security rules
// written in expr, and raises alerts. This package only wires rooms together
// from configuration; the logic lives in the rooms.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "kubesift:", err)
		os.Exit(exitCode(err))
	}
}

// exitError carries a specific exit status (e.g. 1 for "problems found" as
// opposed to 2 for usage errors, usage.go).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return 1
}
