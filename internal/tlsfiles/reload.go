package tlsfiles

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
	"time"
)

// reloader decides when the files behind a Certificate or a CAPool are read
// again: at most once per check interval, and only when one of them
// changed since what is served was read. A version that does not load (a
// renewal caught half-written) is tried once, logged once, and the previous
// content is kept until the files change again. Its owner's mutex guards it.
type reloader struct {
	what, field string // "TLS certificate", "collector.audit_webhook.tls_cert_file/tls_key_file"
	paths       []string
	log         *slog.Logger
	interval    time.Duration
	now         func() time.Time

	loaded  []stamp // of the files what is served was read from
	tried   []stamp // of the files last tried; nil once unreadable files were reported
	checked time.Time
	// Atomic, so that metrics read them without the owner's mutex.
	reloads, failures atomic.Int64
}

// stats are the successful and failed reloads so far.
func (r *reloader) stats() (reloads, failures int64) { return r.reloads.Load(), r.failures.Load() }

// stamp tells a file's versions apart: modification time and size, of what
// the path points to (os.Stat follows the ..data symlink of a Secret volume).
type stamp struct {
	mod  time.Time
	size int64
}

func newReloader(what string, o Options, paths ...string) *reloader {
	r := &reloader{what: what, field: o.Field, paths: paths, log: o.Log, interval: o.CheckInterval, now: o.Now}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.interval <= 0 {
		r.interval = DefaultCheckInterval
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

func (r *reloader) stamps() ([]stamp, error) {
	st := make([]stamp, len(r.paths))
	for i, p := range r.paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		st[i] = stamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return st, nil
}

// first loads the files at start; its error names the configuration field.
func (r *reloader) first(load func() error) error {
	st, err := r.stamps()
	if err == nil {
		err = load()
	}
	if err != nil {
		return fmt.Errorf("%s: %w", r.field, err)
	}
	r.loaded, r.tried, r.checked = st, st, r.now()
	return nil
}

// maybeReload calls load when the check interval has passed and the files
// changed; load replaces what is served only when it succeeds. detail adds
// one attribute (name, value) to the log of a successful reload.
func (r *reloader) maybeReload(load func() error, detailKey string, detail func() any) {
	now := r.now()
	if now.Sub(r.checked) < r.interval {
		return
	}
	r.checked = now
	st, err := r.stamps()
	switch {
	case err != nil:
		if r.tried != nil {
			r.failures.Add(1)
			r.log.Warn(r.what+" files unreadable; keeping the previous one", "field", r.field, "err", err)
			r.tried = nil
		}
	case !slices.Equal(st, r.loaded) && !slices.Equal(st, r.tried):
		r.tried = st
		if err := load(); err != nil {
			r.failures.Add(1)
			r.log.Warn(r.what+" files changed but do not load; keeping the previous one", "field", r.field, "err", err)
			return
		}
		r.loaded = st
		r.reloads.Add(1)
		r.log.Info(r.what+" reloaded", "field", r.field, detailKey, detail())
	}
}
