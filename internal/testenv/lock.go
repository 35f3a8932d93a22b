package testenv

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// FaultLockName is the lock file, in the test ground's state directory, that
// coordinates fault-injection tests (which stop and restart a shared server)
// with the tests that use that server.
const FaultLockName = ".fault.lock"

// FaultLock takes the fault lock exclusively for the rest of the test: no
// other test holding FaultLock or SharedLock runs meanwhile, in this process
// or in another package's test binary. Take it before stopping a server of
// the test ground (e.g. `hack/testenv/kafka.sh stop`) and keep it until the
// server is back. It is released by t.Cleanup.
//
// A test must not take both locks: flock locks of one file opened twice
// conflict even within one process, so that would deadlock.
func FaultLock(t testing.TB) {
	t.Helper()
	lockFile(t, syscall.LOCK_EX)
}

// SharedLock takes the fault lock shared for the rest of the test. Integration
// tests that need a server a fault test may stop (Kafka) take it, so that
// they never run while one is stopped; any number of them hold it at once.
// Call it before testenv.KafkaBrokers. It is released by t.Cleanup.
func SharedLock(t testing.TB) {
	t.Helper()
	lockFile(t, syscall.LOCK_SH)
}

func lockFile(t testing.TB, how int) {
	t.Helper()
	dir := Dir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("test ground lock: %v", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, FaultLockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("test ground lock: %v", err)
	}
	// Blocks until the lock is free; flock is released by close, also when
	// the test binary dies, so a crashed fault test cannot wedge the rest.
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		t.Fatalf("test ground lock: %v", err)
	}
	t.Cleanup(func() { f.Close() })
}
