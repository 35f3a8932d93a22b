package lifecycle

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
)

// recorder notes the order in which components stop.
type recorder struct {
	mu      sync.Mutex
	stopped []string
}

func (r *recorder) note(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = append(r.stopped, name)
}

// untilDone is a long-lived component: it returns when its context ends.
func (r *recorder) untilDone(name string) RunFunc {
	return func(ctx context.Context) error {
		<-ctx.Done()
		r.note(name)
		return ctx.Err()
	}
}

func TestGroup(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name        string
		build       func(g *Group, r *recorder, started chan<- string)
		cancelOuter bool
		wantErrs    []string
		wantStopped []string
	}{
		{
			name: "outer cancel stops in reverse order without error",
			build: func(g *Group, r *recorder, _ chan<- string) {
				g.Add("sink", r.untilDone("sink"))
				g.Add("server", r.untilDone("server"))
				g.Add("consumer", r.untilDone("consumer"))
			},
			cancelOuter: true,
			wantStopped: []string{"consumer", "server", "sink"},
		},
		{
			name: "first failure stops the rest and is reported with its name",
			build: func(g *Group, r *recorder, _ chan<- string) {
				g.Add("sink", r.untilDone("sink"))
				g.Add("consumer", func(context.Context) error { return boom })
				g.Add("server", r.untilDone("server"))
			},
			wantErrs:    []string{"consumer: boom"},
			wantStopped: []string{"server", "sink"},
		},
		{
			name: "every error is reported, not only the first",
			build: func(g *Group, r *recorder, _ chan<- string) {
				g.Add("sink", func(ctx context.Context) error {
					<-ctx.Done()
					return errors.New("flush failed")
				})
				g.Add("consumer", func(context.Context) error { return boom })
			},
			wantErrs: []string{"consumer: boom", "sink: flush failed"},
		},
		{
			name: "a component finishing with nil stops nothing",
			build: func(g *Group, r *recorder, started chan<- string) {
				g.Add("warmup", func(context.Context) error { started <- "warmup"; return nil })
				g.Add("server", r.untilDone("server"))
			},
			cancelOuter: true,
			wantStopped: []string{"server"},
		},
		{
			name: "a main component's return ends the group",
			build: func(g *Group, r *recorder, _ chan<- string) {
				g.Add("server", r.untilDone("server"))
				g.AddMain("replay", func(context.Context) error { return nil })
			},
			wantStopped: []string{"server"},
		},
		{
			name: "a service returning nil before the stop fails the group",
			build: func(g *Group, r *recorder, _ chan<- string) {
				g.Add("sink", r.untilDone("sink"))
				g.AddService("metrics server", func(context.Context) error { return nil })
				g.AddMain("consumer", r.untilDone("consumer"))
			},
			wantErrs:    []string{"metrics server: stopped unexpectedly"},
			wantStopped: []string{"consumer", "sink"},
		},
		{
			name: "a service that returns nil when stopped is no failure",
			build: func(g *Group, r *recorder, _ chan<- string) {
				g.AddService("dispatcher", func(ctx context.Context) error {
					<-ctx.Done()
					r.note("dispatcher")
					return nil
				})
				g.Add("consumer", r.untilDone("consumer"))
			},
			cancelOuter: true,
			wantStopped: []string{"consumer", "dispatcher"},
		},
		{
			name: "the group ends when every component has returned",
			build: func(g *Group, _ *recorder, _ chan<- string) {
				g.Add("a", func(context.Context) error { return nil })
				g.Add("b", func(context.Context) error { return nil })
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var r recorder
			started := make(chan string, 1)
			g := New(nil)
			tt.build(g, &r, started)
			done := make(chan error, 1)
			go func() { done <- g.Run(ctx) }()
			if tt.cancelOuter {
				if tt.name == "a component finishing with nil stops nothing" {
					<-started
				}
				cancel()
			}
			err := <-done
			if len(tt.wantErrs) == 0 && err != nil {
				t.Fatalf("Run: %v, want nil", err)
			}
			for _, want := range tt.wantErrs {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("Run: %v, want it to contain %q", err, want)
				}
			}
			if len(tt.wantErrs) > 0 && !errors.Is(err, boom) && !errors.Is(err, ErrStoppedUnexpectedly) {
				t.Errorf("Run: %v does not wrap the component's error", err)
			}
			if !slices.Equal(r.stopped, tt.wantStopped) {
				t.Errorf("stop order %v, want %v", r.stopped, tt.wantStopped)
			}
		})
	}
}

func TestAddAfterRunPanics(t *testing.T) {
	g := New(nil)
	g.Add("a", func(context.Context) error { return nil })
	if err := g.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Error("Add after Run did not panic")
		}
	}()
	g.Add("b", func(context.Context) error { return nil })
}
