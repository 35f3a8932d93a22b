package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/backoff"
)

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		err    error
		want   bool
	}{
		{"200", 200, nil, false},
		{"201", 201, nil, false},
		{"400", 400, nil, false},
		{"401", 401, nil, false},
		{"404", 404, nil, false},
		{"409", 409, nil, false},
		{"413", 413, nil, false},
		{"429", 429, nil, true},
		{"500", 500, nil, true},
		{"503", 503, nil, true},
		{"refused", 0, &net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{"eof", 0, fmt.Errorf("post: %w", io.ErrUnexpectedEOF), true},
		{"request timeout", 0, fmt.Errorf("post: %w", context.DeadlineExceeded), true},
		{"canceled", 0, fmt.Errorf("post: %w", context.Canceled), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Retryable(tc.status, tc.err); got != tc.want {
				t.Fatalf("Retryable(%d, %v) = %v, want %v", tc.status, tc.err, got, tc.want)
			}
		})
	}
}

func TestDo(t *testing.T) {
	fast := backoff.Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond}
	permanent := &StatusError{Op: "post", StatusCode: 400}
	transient := &StatusError{Op: "post", StatusCode: 503}
	for _, tc := range []struct {
		name      string
		b         backoff.Policy
		results   []error // one per attempt; the last repeats
		wantCalls int
		wantErr   error
	}{
		{"first try", fast, []error{nil}, 1, nil},
		{"retry then ok", fast, []error{transient, transient, nil}, 3, nil},
		{"permanent stops", fast, []error{transient, permanent}, 2, permanent},
		{"attempts bound", backoff.Policy{Initial: time.Millisecond, Attempts: 3}, []error{transient}, 3, ErrGaveUp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls, retries := 0, 0
			err := Do(context.Background(), tc.b, func(context.Context) (bool, error) {
				e := tc.results[min(calls, len(tc.results)-1)]
				calls++
				var se *StatusError
				if errors.As(e, &se) {
					return se.Retryable(), e
				}
				return false, e
			}, func(int, error) { retries++ })
			if calls != tc.wantCalls {
				t.Fatalf("calls = %d, want %d", calls, tc.wantCalls)
			}
			if retries != calls-1 && tc.wantErr != ErrGaveUp {
				t.Fatalf("onRetry called %d times for %d calls", retries, calls)
			}
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestDoHonoursRetryAfterAndContext(t *testing.T) {
	ra := &StatusError{Op: "post", StatusCode: 429, After: 20 * time.Millisecond}
	start := time.Now()
	n := 0
	err := Do(context.Background(), backoff.Policy{Initial: time.Microsecond, Max: time.Second}, func(context.Context) (bool, error) {
		n++
		if n == 1 {
			return true, ra
		}
		return false, nil
	}, nil)
	if err != nil || time.Since(start) < 20*time.Millisecond {
		t.Fatalf("err=%v after %v: Retry-After not honoured", err, time.Since(start))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err = Do(ctx, backoff.Policy{Initial: 10 * time.Millisecond}, func(context.Context) (bool, error) { return true, ra }, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ra) {
		t.Fatalf("err = %v, want the context's end joined with the last error", err)
	}
}

// The context can end while an attempt runs, not only while Do waits: the
// caller must still learn both.
func TestDoContextEndsDuringAttempt(t *testing.T) {
	ra := &StatusError{Op: "post", StatusCode: 503}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := Do(ctx, backoff.Policy{Initial: time.Millisecond}, func(context.Context) (bool, error) {
		cancel()
		return true, ra
	}, nil)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ra) {
		t.Fatalf("err = %v, want the context's end joined with the last error", err)
	}
}

func TestStatusErrorText(t *testing.T) {
	e := &StatusError{Op: "bulk", StatusCode: 503, Detail: "cluster_block_exception"}
	if got, want := e.Error(), "bulk: HTTP 503 Service Unavailable: cluster_block_exception"; got != want {
		t.Fatalf("got %q want %q", got, want)
	}
}
