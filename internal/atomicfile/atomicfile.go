// Package atomicfile writes checkpoint files the way promtail's positions
// file is written: to a temporary file, fsynced, renamed over the old one.
// The audit tail's positions and kubesift run's dead-letter mark share it,
// so a crash never leaves a torn checkpoint that would replay or skip data.
package atomicfile

import (
	"os"
	"path/filepath"
)

// WriteFile replaces path with data so that a crash at any point
// leaves either the old or the new file, never a torn one: write a temporary
// file in the same directory, fsync it, rename it over path, fsync the
// directory (so the rename itself is durable).
func WriteFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmpName, path); err != nil {
		return err
	}
	ok = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
