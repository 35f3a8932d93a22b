// Package lifecycle runs the long-lived components of one command as a unit.
//
// Every command (collect, process, notify, run) is a handful of components —
// an HTTP server, a consumer, a rule watcher, a source — that must start
// together and stop together. A Group gives them one contract:
//
//   - Components start in the order they were added, each in its own
//     goroutine with its own context.
//   - The first component to return an error stops the group. A component
//     that returns nil has finished its work and stops nothing (a one-shot
//     warm-up, a watcher with nothing to watch) — unless it was added with
//     AddMain: a main component is the command's reason to run (process's
//     consumer, run's replay), so its return ends the group either way —
//     or with AddService: a service (a listener, a dispatcher, a flusher)
//     has no work that ends, so its return before the stop, even with nil,
//     is a failure ("stopped unexpectedly") and stops the group.
//     The group also ends when every component has returned.
//   - Stopping (the parent context ending, or a failure) cancels the
//     components in reverse order and waits for each before cancelling the
//     next, so whatever a component writes to (added before it) outlives it:
//     a consumer drains into a sink that is still open.
//   - Run returns every error, each naming its component; cancellation
//     caused by the stop itself is not an error. A command returns Run's
//     error, so a component that fails — a listener that cannot bind its
//     address included — makes the command exit non-zero.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// RunFunc is a component's body. It must return once ctx is done; it may
// return earlier, with nil when its work is finished or an error when it
// cannot go on.
type RunFunc func(ctx context.Context) error

type component struct {
	name    string
	main    bool
	service bool
	run     RunFunc
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
}

// Group is a set of components run by Run. The zero value is not usable;
// build one with New.
type Group struct {
	log   *slog.Logger
	comps []*component
	ran   bool
}

// New returns an empty group that logs each component's failure on log
// (nil: slog.Default()).
func New(log *slog.Logger) *Group {
	if log == nil {
		log = slog.Default()
	}
	return &Group{log: log}
}

// Add registers a component. Add after Run has started panics: the shutdown
// order is fixed when the group starts.
func (g *Group) Add(name string, run RunFunc) { g.add(&component{name: name, run: run}) }

// AddMain registers a component whose return, with or without an error,
// stops the group.
func (g *Group) AddMain(name string, run RunFunc) {
	g.add(&component{name: name, run: run, main: true})
}

// AddService registers a component that runs until it is stopped: its
// return before the group stops (or Run's context ends) is a failure even
// when it returns nil.
func (g *Group) AddService(name string, run RunFunc) {
	g.add(&component{name: name, run: run, service: true})
}

// ErrStoppedUnexpectedly is the error of a service that returned nil
// before it was asked to stop.
var ErrStoppedUnexpectedly = errors.New("stopped unexpectedly")

func (g *Group) add(c *component) {
	if g.ran {
		panic("lifecycle: Add after Run")
	}
	g.comps = append(g.comps, c)
}

// Run starts every component and blocks until all have returned: after ctx
// ends, or after the first component fails. It returns nil when every
// component ended cleanly, otherwise the errors joined, each prefixed with
// its component's name. Run may be called once.
func (g *Group) Run(ctx context.Context) error {
	if g.ran {
		return errors.New("lifecycle: Run called twice")
	}
	g.ran = true
	stop := make(chan struct{})
	var once sync.Once
	var left sync.WaitGroup
	left.Add(len(g.comps))
	go func() { left.Wait(); once.Do(func() { close(stop) }) }()
	for _, c := range g.comps {
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c.cancel, c.done = cancel, make(chan struct{})
		go func(c *component, cctx context.Context) {
			defer left.Done()
			defer close(c.done)
			err := c.run(cctx)
			if err == nil && c.service && cctx.Err() == nil && ctx.Err() == nil {
				err = ErrStoppedUnexpectedly
			}
			if err != nil && !(errors.Is(err, context.Canceled) && cctx.Err() != nil) {
				c.err = fmt.Errorf("%s: %w", c.name, err)
				g.log.Error("component failed; stopping", "component", c.name, "err", err)
				once.Do(func() { close(stop) })
			} else if c.main {
				once.Do(func() { close(stop) })
			}
		}(c, cctx)
	}
	select {
	case <-ctx.Done():
	case <-stop:
	}
	var errs []error
	for i := len(g.comps) - 1; i >= 0; i-- {
		c := g.comps[i]
		c.cancel()
		<-c.done
	}
	for _, c := range g.comps {
		if c.err != nil {
			errs = append(errs, c.err)
		}
	}
	return errors.Join(errs...)
}
