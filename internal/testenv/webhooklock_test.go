package testenv

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// rawLock takes the webhook lock on a separate open file, as another test
// binary would; ok is false when it is held elsewhere.
func rawLock(t *testing.T) (f *os.File, ok bool) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(Dir(), WebhookLockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		f.Close()
		return nil, false
	}
	return f, true
}

func TestLockWebhook(t *testing.T) {
	t.Setenv("KUBESIFT_TESTENV", t.TempDir())
	t.Run("held for the test, released by its cleanup", func(t *testing.T) {
		LockWebhook(t)
		if f, ok := rawLock(t); ok {
			f.Close()
			t.Error("lock not held")
		}
	})
	f, ok := rawLock(t)
	if !ok {
		t.Fatal("lock not released after the test")
	}
	// f now holds it like another test binary: LockWebhook waits for it.
	acquired := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t.Run("waiter", func(t *testing.T) {
			LockWebhook(t)
			close(acquired)
		})
	}()
	select {
	case <-acquired:
		t.Fatal("took a lock held elsewhere")
	case <-time.After(300 * time.Millisecond):
	}
	f.Close()
	select {
	case <-acquired:
	case <-time.After(5 * time.Second):
		t.Fatal("did not take the lock once it was released")
	}
	<-finished
}
