package replay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/record"
)

// SnapshotDir is where a replayed directory keeps object snapshots: the
// objects source's records (record.Marshal envelopes, one a line), as
// hack/record-scenario writes them from the test ground. A subdirectory,
// because replay does not recurse: the audit and Events files beside it are
// replayed by Run, the snapshot is published by PublishSnapshots.
const SnapshotDir = "objects"

// SnapshotFiles are the *.ndjson files of <dir>/objects/ of every
// directory of Options.Paths, in name order.
func (r *Replayer) SnapshotFiles() ([]string, error) {
	var out []string
	for _, p := range r.o.Paths {
		if st, err := os.Stat(p); err != nil || !st.IsDir() {
			continue // New reported a missing path
		}
		found, err := filepath.Glob(filepath.Join(p, SnapshotDir, "*.ndjson"))
		if err != nil {
			return nil, fmt.Errorf("object snapshots: %w", err)
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

// PublishSnapshots publishes every object record of the snapshot files as
// the objects source publishes its records — redacted by the Sanitizer,
// stamped with the cluster, in batches, backpressure waited out — and
// returns how many. A line that is not an object record is dead-lettered
// naming the file and line, and the rest is published: one bad line costs
// that object only. It returns when every record is published (on Kafka or
// in the spool), so a posture consumer that starts afterwards rebuilds from
// the whole snapshot.
func (r *Replayer) PublishSnapshots(ctx context.Context, files []string) (int, error) {
	n := 0
	for _, path := range files {
		m, err := r.publishSnapshot(ctx, path)
		n += m
		if err != nil {
			return n, fmt.Errorf("object snapshot %s: %w", path, err)
		}
	}
	return n, nil
}

func (r *Replayer) publishSnapshot(ctx context.Context, path string) (int, error) {
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
		if err := r.publish(ctx, batch); err != nil {
			return err
		}
		n += len(batch)
		batch = nil // the publisher may keep the slice
		return nil
	}
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		rec, err := r.snapshotObject(sc.Bytes())
		if err != nil {
			data := sc.Bytes()[:min(len(sc.Bytes()), r.o.DeadLetterMaxBytes)]
			dl := r.o.Sanitizer.DeadLetter(collector.DeadLetter{Data: append([]byte(nil), data...), Source: Source, Origin: path,
				Offset: -1, Line: line, Reason: "object_snapshot", Error: fmt.Sprintf("%s line %d: %v", path, line, err), Cluster: r.o.Cluster})
			if err := r.publishDeadLetter(ctx, dl); err != nil {
				return n, err
			}
			continue
		}
		if batch = append(batch, rec); len(batch) >= r.o.BatchSize {
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

// snapshotObject decodes one snapshot line into an object record of the
// replay's cluster, redacted.
func (r *Replayer) snapshotObject(line []byte) (*record.Record, error) {
	rec, err := record.Unmarshal(line)
	if err != nil {
		return nil, err
	}
	if rec.Source != record.SourceObject || rec.Deleted {
		return nil, fmt.Errorf("source %q: not an object record", rec.Source)
	}
	_, kind, ns, name, err := record.ParseObjectKey(rec.Key)
	if err != nil {
		return nil, err
	}
	rec.Cluster = r.o.Cluster
	rec.Key = record.KeyObjectRef(r.o.Cluster, kind, ns, name)
	if err := r.o.Sanitizer.Apply(rec); err != nil {
		return nil, errors.Join(errors.New("redaction"), err)
	}
	return rec, nil
}
