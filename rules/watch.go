package rules

import (
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// Watch reloads the rules whenever the content of the rule directories
// changes, until ctx ends. It polls a content hash every interval instead of
// using inotify: ConfigMap volumes update by swapping a symlinked ..data
// directory, which inotify watchers on the visible files miss or see as
// deletions, while a content hash sees exactly "the rules changed". A bad
// reload keeps the previous set in force; onReload (if set) learns the
// outcome of every attempt, for logs and metrics.
func (e *Engine) Watch(ctx context.Context, interval time.Duration, log *slog.Logger, onReload func(error)) {
	if len(e.opts.Dirs) == 0 {
		return
	}
	// Compare with the fingerprint taken when the current set was loaded,
	// not one taken now: a change made between New and Watch must count.
	last := e.loadedFP
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if e.fingerprint() == last {
			continue
		}
		err := e.Reload()
		e.mu.Lock()
		last = e.loadedFP
		e.mu.Unlock()
		if err != nil {
			log.Error("rules reload failed; keeping the previous rules", "err", err)
		} else {
			log.Info("rules reloaded", "rules", len(e.Set().rules))
		}
		if onReload != nil {
			onReload(err)
		}
	}
}

// fingerprint hashes the names and contents of every rule and fixture file
// under the user directories.
func (e *Engine) fingerprint() [32]byte {
	h := sha256.New()
	for _, d := range e.opts.Dirs {
		files, err := ruleFiles(d)
		if err != nil {
			io.WriteString(h, "error:"+err.Error())
			continue
		}
		for _, f := range files {
			io.WriteString(h, filepath.Base(f)+"\x00")
			if fh, err := os.Open(f); err == nil {
				io.Copy(h, fh)
				fh.Close()
			}
		}
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}
