package testenv

import (
	"fmt"
	"net"
	"testing"
)

// Relisten listens on addr again after a receiver outage. Another process
// taking the port meanwhile is the only way it fails; under
// KUBESIFT_REQUIRE_REAL (CI) that fails the test instead of skipping it, so
// a receiver-outage test can never pass unnoticed without having run.
func Relisten(t testing.TB, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		msg := fmt.Sprintf("port %s taken while the receiver was down: %v", addr, err)
		Missing(t, msg)
	}
	return l
}
