package backoff

import (
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		p    Policy
		n    int
		want time.Duration
	}{
		{"zero policy, first", Policy{}, 1, 100 * ms},
		{"zero policy, doubles", Policy{}, 3, 400 * ms},
		{"zero policy, capped at 30s", Policy{}, 20, 30 * time.Second},
		{"n below 1 is the first", Policy{Initial: 50 * ms}, 0, 50 * ms},
		{"replay: 50ms", Policy{Initial: 50 * ms, Max: 2 * time.Second}, 1, 50 * ms},
		{"replay: 800ms", Policy{Initial: 50 * ms, Max: 2 * time.Second}, 5, 800 * ms},
		{"replay: capped", Policy{Initial: 50 * ms, Max: 2 * time.Second}, 7, 2 * time.Second},
		{"tail: 100ms..5s, fifth", Policy{Initial: 100 * ms, Max: 5 * time.Second}, 5, 1600 * ms},
		{"tail: capped", Policy{Initial: 100 * ms, Max: 5 * time.Second}, 7, 5 * time.Second},
		{"initial above max", Policy{Initial: 10 * time.Second, Max: time.Second}, 1, time.Second},
		{"huge n does not overflow", Policy{Initial: time.Nanosecond, Max: time.Hour}, 1 << 20, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Delay(tc.n); got != tc.want {
				t.Errorf("Delay(%d) = %v, want %v", tc.n, got, tc.want)
			}
		})
	}
}

// TestWaitIsEqualJitter: every draw lies in [Delay/2, Delay], and the draws
// spread over that range rather than sitting at one end.
func TestWaitIsEqualJitter(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Policy
		n    int
	}{
		{"first", Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}, 1},
		{"capped", Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}, 10},
		{"one nanosecond", Policy{Initial: time.Nanosecond, Max: time.Nanosecond}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.p.Delay(tc.n)
			lo, hi := d, time.Duration(0)
			for range 2000 {
				w := tc.p.Wait(tc.n)
				if w < d/2 || w > d {
					t.Fatalf("Wait(%d) = %v, outside [%v, %v]", tc.n, w, d/2, d)
				}
				lo, hi = min(lo, w), max(hi, w)
			}
			if d >= time.Millisecond && (lo > d/2+d/10 || hi < d-d/10) {
				t.Errorf("2000 draws span only [%v, %v] of [%v, %v]", lo, hi, d/2, d)
			}
		})
	}
}

func TestJitterOfNothing(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		if got := Jitter(d); got != 0 {
			t.Errorf("Jitter(%v) = %v, want 0", d, got)
		}
	}
}
