package notify

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/kubesift/kubesift/sink/notify/notifytest"
)

// scriptedAnswer lets an answer test make a fake on-call service say what
// the test wants (a 429, a 503) instead of checking the request.
type scriptedAnswer struct {
	mu   sync.Mutex
	next func() (int, string)
}

func (s *scriptedAnswer) script(next func() (int, string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next = next
}

// answered writes the scripted answer, if there is one, and says whether
// it did.
func (s *scriptedAnswer) answered(w http.ResponseWriter) bool {
	s.mu.Lock()
	next := s.next
	s.mu.Unlock()
	if next == nil {
		return false
	}
	code, body := next()
	w.WriteHeader(code)
	io.WriteString(w, body)
	return true
}

// checkAnswer sends a one-alert notification through n and checks the
// Notifier contract's classification of the answer: retry as wanted, an
// error containing wantErr (none when it is empty), and never secret in it.
func checkAnswer(t *testing.T, n Notifier, wantRetry bool, wantErr, secret string) {
	t.Helper()
	retry, err := n.Notify(context.Background(), testNotification(notifytest.PrivilegedPod(0, "a")))
	if retry != wantRetry || (err == nil) != (wantErr == "") || (err != nil && !strings.Contains(err.Error(), wantErr)) {
		t.Fatalf("Notify = %v, %v; want retry %v, error with %q", retry, err, wantRetry, wantErr)
	}
	if err != nil && strings.Contains(err.Error(), secret) {
		t.Errorf("error shows the secret: %v", err)
	}
}
