package testenv

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// tryLock reports whether the fault lock can be taken with how right now,
// from a separate open file (as another test binary would).
func tryLock(t *testing.T, how int) bool {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(Dir(), FaultLockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB) == nil
}

func TestFaultAndSharedLocks(t *testing.T) {
	t.Setenv("KUBESIFT_TESTENV", t.TempDir())
	tests := []struct {
		name           string
		take           func(testing.TB)
		sharedOK, exOK bool
	}{
		{"shared admits shared, excludes fault", SharedLock, true, false},
		{"fault excludes both", FaultLock, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("holder", func(t *testing.T) {
				tc.take(t)
				if got := tryLock(t, syscall.LOCK_SH); got != tc.sharedOK {
					t.Errorf("shared lock available = %v, want %v", got, tc.sharedOK)
				}
				if got := tryLock(t, syscall.LOCK_EX); got != tc.exOK {
					t.Errorf("exclusive lock available = %v, want %v", got, tc.exOK)
				}
			})
			// Released by the holder's cleanup.
			if !tryLock(t, syscall.LOCK_EX) {
				t.Error("lock still held after the test ended")
			}
		})
	}
}
