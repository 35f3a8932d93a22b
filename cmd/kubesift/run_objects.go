package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/collector/replay"
	"github.com/kubesift/kubesift/record"
)

// snapshotSubdir is where a replayed directory keeps object snapshots: the
// objects source's records (record.Marshal envelopes, one a line), as
// hack/record-scenario writes them from the test ground. A subdirectory,
// because replay does not recurse: the audit and Events files beside it
// are replayed, the snapshot is published to the objects topic.
const snapshotSubdir = "objects"

// snapshotFiles are the *.ndjson files of <dir>/objects/ of every
// directory in paths, in name order.
func snapshotFiles(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		if st, err := os.Stat(p); err != nil || !st.IsDir() {
			continue // replay reports a missing path
		}
		found, err := filepath.Glob(filepath.Join(p, snapshotSubdir, "*.ndjson"))
		if err != nil {
			return nil, fmt.Errorf("object snapshots: %w", err)
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

// snapshotPublisher publishes object snapshot files as the objects source
// publishes its records: redacted by the collector's Sanitizer, stamped
// with run's cluster.
type snapshotPublisher struct {
	pub     collector.Publisher
	san     *redact.Sanitizer
	cluster record.Cluster
	maxDL   int // bytes of a bad line kept in its dead letter
}

// publish publishes every object record of files and returns how many. A
// line that is not an object record is dead-lettered naming the file and
// line, and the rest is published: one bad line costs that object only.
// It returns when every record is acknowledged by Kafka (or spooled), so a
// posture consumer that starts afterwards rebuilds from the whole snapshot.
func (s *snapshotPublisher) publish(ctx context.Context, files []string) (int, error) {
	n := 0
	for _, path := range files {
		m, err := s.publishFile(ctx, path)
		n += m
		if err != nil {
			return n, fmt.Errorf("object snapshot %s: %w", path, err)
		}
	}
	return n, nil
}

func (s *snapshotPublisher) publishFile(ctx context.Context, path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	var batch []*record.Record
	n := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := s.pub.Publish(ctx, batch); err != nil {
			return err
		}
		n += len(batch)
		batch = batch[:0]
		return nil
	}
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		r, err := s.object(sc.Bytes())
		if err != nil {
			data := sc.Bytes()[:min(len(sc.Bytes()), s.maxDL)]
			dl := s.san.DeadLetter(collector.DeadLetter{Data: append([]byte(nil), data...), Source: replay.Source, Origin: path,
				Offset: -1, Line: line, Reason: "object_snapshot", Error: fmt.Sprintf("%s line %d: %v", path, line, err), Cluster: s.cluster})
			if err := s.pub.PublishDeadLetters(ctx, []collector.DeadLetter{dl}); err != nil {
				return n, err
			}
			continue
		}
		if batch = append(batch, r); len(batch) >= 500 {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return n, err
	}
	return n, flush()
}

// object decodes one snapshot line into an object record of run's
// cluster, redacted.
func (s *snapshotPublisher) object(line []byte) (*record.Record, error) {
	r, err := record.Unmarshal(line)
	if err != nil {
		return nil, err
	}
	if r.Source != record.SourceObject || r.Deleted {
		return nil, fmt.Errorf("source %q: not an object record", r.Source)
	}
	_, kind, ns, name, err := record.ParseObjectKey(r.Key)
	if err != nil {
		return nil, err
	}
	r.Cluster = s.cluster
	r.Key = record.KeyObjectRef(s.cluster, kind, ns, name)
	if err := s.san.Apply(r); err != nil {
		return nil, errors.Join(errors.New("redaction"), err)
	}
	return r, nil
}
