package testenv

import (
	"runtime"
	"testing"
)

// endTB records how a test was ended; Fatal and Skip end its goroutine as
// testing's do.
type endTB struct {
	testing.TB
	fatal, skipped string
}

func (e *endTB) Helper()           {}
func (e *endTB) Fatal(args ...any) { e.fatal = args[0].(string); runtime.Goexit() }
func (e *endTB) Skip(args ...any)  { e.skipped = args[0].(string); runtime.Goexit() }

// TestMissing: a missing part skips the test, except under
// KUBESIFT_REQUIRE_REAL=1, where it fails it.
func TestMissing(t *testing.T) {
	for _, tc := range []struct {
		require   string
		wantFatal bool
	}{{"", false}, {"1", true}} {
		t.Setenv(RequireRealVar, tc.require)
		var e endTB
		done := make(chan struct{})
		go func() {
			defer close(done)
			Missing(&e, "chromium is not installed")
		}()
		<-done
		if (e.fatal != "") != tc.wantFatal || (e.skipped != "") == tc.wantFatal {
			t.Errorf("%s=%q: fatal %q, skipped %q; want fatal %v", RequireRealVar, tc.require, e.fatal, e.skipped, tc.wantFatal)
		}
	}
}
