package audittail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Rotation and truncation: noticing that the path names a new file (rename)
// or that the file shrank (copytruncate), finishing the old file or its copy
// first, and finding a saved position's file after a restart.

// tracked is an open file the follower will read.
type tracked struct {
	f    *os.File
	ino  uint64
	name string
	// verify: the file was truncated (copytruncate) and is queued behind its
	// copy. headLen/headHash fingerprint what it holds since, refreshed
	// every poll interval; if it no longer starts with that when its turn
	// comes, it was truncated again and the newer copy is read first.
	verify   bool
	headLen  int
	headHash uint64
}

// refreshHead extends the fingerprint of a queued truncated file while its
// head is still the one seen before.
func (q *tracked) refreshHead() {
	if !q.verify || q.headLen >= headMax {
		return
	}
	buf := make([]byte, headMax)
	n, _ := q.f.ReadAt(buf, 0)
	if n < q.headLen || (q.headLen > 0 && fnv64(buf[:q.headLen]) != q.headHash) {
		return // truncated again: next() deals with it
	}
	q.headLen, q.headHash = n, fnv64(buf[:n])
}

func fnv64(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// headMatches reports whether fh starts with the bytes fingerprinted in p.
func headMatches(fh *os.File, p Position) bool {
	if p.HeadLen <= 0 {
		return true // nothing fingerprinted (offset 0, or an older positions file)
	}
	buf := make([]byte, p.HeadLen)
	n, _ := fh.ReadAt(buf, 0)
	return n == p.HeadLen && fnv64(buf) == p.HeadHash
}

// atEOF checks, with nothing left to publish, whether the file was rotated
// or truncated, and switches files when it was. switched reports that
// reading should resume at once; ok is false when ctx ended.
func (f *follower) atEOF(ctx context.Context) (switched, ok bool) {
	st, err := f.f.Stat()
	if err != nil {
		f.readError("stat", err)
		return false, true
	}
	f.size.Store(st.Size())
	f.updateLag()
	readOff := f.off + int64(len(f.buf))
	if !f.draining && (st.Size() < readOff || !f.sigMatches(readOff)) {
		return true, f.truncated(ctx, st.Size())
	}
	f.checkPath()
	if !f.draining {
		return false, true
	}
	if f.complete {
		return true, f.next(ctx)
	}
	// A rotated file is finished once it stayed at EOF for a whole poll
	// interval: a writer may still have been flushing to it.
	if f.quietSince.IsZero() {
		f.quietSince = time.Now()
		return false, true
	}
	if time.Since(f.quietSince) < f.t.cfg.PollInterval {
		return false, true
	}
	return true, f.next(ctx)
}

// checkPath looks at what the path names now; a new file there is opened at
// once and queued behind the file being read, which is then finished first.
func (f *follower) checkPath() {
	f.lastCheck = time.Now()
	for i := range f.queue {
		f.queue[i].refreshHead()
	}
	pst, err := os.Stat(f.path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			f.readError("stat path", err)
		}
		return // removed: keep what is open until a new file appears
	}
	ino := inode(pst)
	if ino == f.ino || (len(f.queue) > 0 && f.queue[len(f.queue)-1].ino == ino) {
		return
	}
	if len(f.queue) >= maxQueued {
		f.logLimit.Warn(f.log, "queue", "files rotate faster than the tail reads them; not opening more until it catches up", "queued", len(f.queue))
		return
	}
	fh, fi, err := openFile(f.path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			f.readError("open", err)
		}
		return
	}
	if inode(fi) != ino {
		fh.Close() // rotated again in between; the next check sees the newest
		return
	}
	f.queue = append(f.queue, tracked{f: fh, ino: ino, name: f.path})
	f.t.m.rotations.WithLabelValues(f.path, rotationRename).Inc()
	f.log.Info("file rotated (new inode at the path): finishing the old file first", "old_inode", f.ino, "new_inode", ino)
	if !f.draining {
		f.draining, f.quietSince = true, time.Time{}
		f.name = fmt.Sprintf("%s (rotated, inode %d)", f.path, f.ino)
	}
}

// next leaves the finished file for the next queued one (or, with none
// queued, the file now at the path), read from its beginning; the finished
// file's unfinished last line goes with the commit of the new position.
func (f *follower) next(ctx context.Context) bool {
	dls := f.leftover("rotated")
	f.log.Info("finished the rotated file; continuing with the next one from its beginning", "file", f.name)
	if len(f.queue) > 0 {
		n := f.queue[0]
		f.queue = f.queue[1:]
		if n.verify && !headMatches(n.f, Position{HeadLen: n.headLen, HeadHash: n.headHash}) {
			// Truncated again while we read its previous copy: what it held
			// is in a newer copy, which starts with the head we saw.
			f.t.m.rotations.WithLabelValues(f.path, rotationTruncate).Inc()
			if cp, cpFi := findByHead(f.path, n.headLen, n.headHash, n.ino, f.ino); cp != nil {
				f.log.Info("truncated again (copytruncate): reading the next copy first", "copy", cp.Name())
				f.setFile(cp, inode(cpFi), fmt.Sprintf("%s (copy %s)", f.path, cp.Name()), 0, 0, true)
				f.draining, f.complete = true, true
				n.headLen, n.headHash = 0, 0
				n.refreshHead()
				f.queue = append([]tracked{n}, f.queue...)
				return f.sendPosition(ctx, dls)
			}
			f.t.m.gaps.WithLabelValues(f.path).Inc()
			f.log.Warn("truncated again and no copy found: lines written to it in between are lost", "file", n.name)
		}
		f.setFile(n.f, n.ino, n.name, 0, 0, true)
		if len(f.queue) > 0 {
			f.draining = true
			f.name = fmt.Sprintf("%s (rotated, inode %d)", f.path, f.ino)
		}
		return f.sendPosition(ctx, dls)
	}
	for {
		fh, fi, err := openFile(f.path)
		if err == nil {
			f.setFile(fh, inode(fi), f.path, 0, 0, true)
			return f.sendPosition(ctx, dls)
		}
		if !errors.Is(err, os.ErrNotExist) {
			f.readError("open", err)
		}
		if !sleepCtx(ctx, f.t.cfg.PollInterval) {
			return false
		}
	}
}

// truncated handles a truncation of the file at the path (copytruncate, or
// a plain truncate) found with no complete line pending: continue in the
// copy at the same offset and then the truncated file from 0, or, without a
// copy, restart at 0 and count a gap. size is the file's size when known
// (-1 otherwise), for the log.
func (f *follower) truncated(ctx context.Context, size int64) bool {
	readOff := f.off + int64(len(f.buf))
	f.t.m.rotations.WithLabelValues(f.path, rotationTruncate).Inc()
	if cp, cpFi := findCopy(f.path, f.ino, readOff, f.sig); cp != nil {
		f.log.Info("file truncated (copytruncate): reading the rest from its copy first", "copy", cp.Name(), "offset", readOff)
		orig := tracked{f: f.f, ino: f.ino, name: f.path, verify: true}
		orig.refreshHead()
		f.queue = append([]tracked{orig}, f.queue...)
		// Keep buf/off/line/head: the copy continues exactly where we were.
		f.f, f.ino, f.name = cp, inode(cpFi), fmt.Sprintf("%s (copy %s)", f.path, cp.Name())
		f.draining, f.complete, f.quietSince = true, true, time.Time{}
		return true
	}
	f.t.m.gaps.WithLabelValues(f.path).Inc()
	f.log.Warn("file truncated and no copy of it found: lines written after our position and before the truncation are lost; restarting at its beginning",
		"offset", readOff, "size", size)
	dls := f.leftover("truncated")
	f.setFile(f.f, f.ino, f.path, 0, 0, true)
	return f.sendPosition(ctx, dls)
}

// sigMatches reports whether the bytes before readOff are still the ones we
// read there (false: the file was truncated and written again past our
// position before we noticed it shrink).
func (f *follower) sigMatches(readOff int64) bool {
	if len(f.sig) == 0 {
		return true
	}
	if cap(f.scratch) < len(f.sig) {
		f.scratch = make([]byte, sigLen)
	}
	s := f.scratch[:len(f.sig)]
	n, err := f.f.ReadAt(s, readOff-int64(len(s)))
	if n < len(s) {
		return err == nil // a short read without error cannot happen; with one, the file shrank
	}
	return bytes.Equal(s, f.sig)
}

// findCopy looks for the copy made by copytruncate: a file in the path's
// directory named like it (same stem), other than it, at least readOff long,
// whose bytes before readOff are the last ones we read. Newest first.
func findCopy(path string, ino uint64, readOff int64, sig []byte) (*os.File, os.FileInfo) {
	if len(sig) == 0 || readOff < int64(len(sig)) {
		return nil, nil
	}
	dir, base := filepath.Dir(path), filepath.Base(path)
	stem := strings.TrimSuffix(base, filepath.Ext(base))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil
	}
	type cand struct {
		name string
		mod  time.Time
	}
	var cands []cand
	for _, e := range entries {
		if e.Name() == base || !strings.HasPrefix(e.Name(), stem) || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Size() < readOff || inode(fi) == ino {
			continue
		}
		cands = append(cands, cand{e.Name(), fi.ModTime()})
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].mod.After(cands[j].mod) })
	buf := make([]byte, len(sig))
	for i, c := range cands {
		if i == 8 {
			break
		}
		fh, fi, err := openFile(filepath.Join(dir, c.name))
		if err != nil {
			continue
		}
		if n, _ := fh.ReadAt(buf, readOff-int64(len(sig))); n == len(sig) && bytes.Equal(buf, sig) {
			return fh, fi
		}
		fh.Close()
	}
	return nil, nil
}

// findByHead finds, among the files named like path (other than the
// excluded inodes), the one starting with the fingerprinted head.
func findByHead(path string, headLen int, headHash uint64, exclude ...uint64) (*os.File, os.FileInfo) {
	if headLen <= 0 {
		return nil, nil
	}
	dir, base := filepath.Dir(path), filepath.Base(path)
	stem := strings.TrimSuffix(base, filepath.Ext(base))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == base || !strings.HasPrefix(e.Name(), stem) {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Size() < int64(headLen) || slices.Contains(exclude, inode(fi)) {
			continue
		}
		if fh, fi, err := openFile(filepath.Join(dir, e.Name())); err == nil {
			if headMatches(fh, Position{HeadLen: headLen, HeadHash: headHash}) {
				return fh, fi
			}
			fh.Close()
		}
	}
	return nil, nil
}

// findSaved finds the file a saved position refers to, now that it is no
// longer at the path: by its inode (rename rotation) or, among the files
// named like the path, by its head (the copy of a copytruncate). It must be
// at least Offset long and match the fingerprint; exclude is the inode now at
// the path.
func findSaved(path string, p Position, exclude uint64) (*os.File, os.FileInfo) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	stem := strings.TrimSuffix(base, filepath.Ext(base))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil
	}
	var byHead []string
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == base {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Size() < p.Offset || inode(fi) == exclude {
			continue
		}
		if inode(fi) != p.Inode {
			if p.HeadLen > 0 && strings.HasPrefix(e.Name(), stem) {
				byHead = append(byHead, e.Name())
			}
			continue
		}
		if fh, fi, err := openFile(filepath.Join(dir, e.Name())); err == nil {
			if inode(fi) == p.Inode && headMatches(fh, p) {
				return fh, fi
			}
			fh.Close()
		}
	}
	for _, name := range byHead {
		if fh, fi, err := openFile(filepath.Join(dir, name)); err == nil {
			if fi.Size() >= p.Offset && headMatches(fh, p) {
				return fh, fi
			}
			fh.Close()
		}
	}
	return nil, nil
}
