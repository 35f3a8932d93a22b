package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kubesift/kubesift/collector/objects"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
)

// The object snapshot of a recorded scenario, relative to its directory: a
// subdirectory, so that replaying the directory's files (which does not
// recurse) leaves it to `kubesift run`, which publishes it to the objects
// topic.
const (
	objectsFile          = "objects/objects.ndjson"
	expectedFindingsFile = "expected-findings.tsv"
)

// snapshotCluster is the cluster name stamped on the snapshot's records;
// `kubesift run` stamps its own (--cluster) when it publishes them.
const snapshotCluster = "scenario"

// listObjects lists every object of the collected kinds as the objects
// source records it, at the end of the story, before the cleanup deletes
// the scenario's objects. It lists untracked (as the cleanup deletes), so
// the lists stay out of the recorded audit log. The ground is shared: the
// listing holds other users' objects too, which writeObjects drops.
func (s *scenario) listObjects(ctx context.Context) (*objects.Listing, error) {
	l, err := objects.List(ctx, s.scaffold.cs, objects.ListOptions{Cluster: record.Cluster{Name: snapshotCluster}})
	if err != nil {
		return nil, fmt.Errorf("object snapshot: %w", err)
	}
	if len(l.Rejected) > 0 {
		return nil, fmt.Errorf("object snapshot: %d objects could not be recorded, first: %w", len(l.Rejected), l.Rejected[0])
	}
	return l, nil
}

// createdUIDs are the uids of the objects the recorder's requests created:
// the responseObject of every successful create in its audit lines.
func createdUIDs(auditLines []byte) map[string]bool {
	uids := map[string]bool{}
	for _, line := range bytes.Split(auditLines, []byte("\n")) {
		var ev struct {
			Verb           string `json:"verb"`
			Stage          string `json:"stage"`
			ResponseStatus struct {
				Code int `json:"code"`
			} `json:"responseStatus"`
			ResponseObject struct {
				Metadata struct {
					UID string `json:"uid"`
				} `json:"metadata"`
			} `json:"responseObject"`
		}
		if json.Unmarshal(line, &ev) != nil || ev.Verb != "create" || ev.Stage != "ResponseComplete" || ev.ResponseStatus.Code >= 300 {
			continue
		}
		if uid := ev.ResponseObject.Metadata.UID; uid != "" {
			uids[uid] = true
		}
	}
	return uids
}

// writeObjects writes the records of l whose object the recorder created to
// out's objects file, one wire envelope (record.Marshal) a line, by key, and
// checks that no planted value is in it.
func writeObjects(out string, l *objects.Listing, created map[string]bool, planted []string) (int, error) {
	var recs []*record.Record
	for _, r := range l.Records {
		uid, _, _ := strings.Cut(r.ID, ":") // record.ObjectRecordID
		if created[uid] {
			recs = append(recs, r)
		}
	}
	if len(recs) == 0 {
		return 0, errors.New("object snapshot: none of the listed objects was created by the recorder")
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Key < recs[j].Key })
	var b bytes.Buffer
	for _, r := range recs {
		line, err := record.Marshal(r)
		if err != nil {
			return 0, fmt.Errorf("object snapshot: %s: %w", r.Key, err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	for _, p := range planted {
		if bytes.Contains(b.Bytes(), []byte(p)) || bytes.Contains(b.Bytes(), []byte(base64.StdEncoding.EncodeToString([]byte(p)))) {
			return 0, fmt.Errorf("object snapshot: planted value %q is in a recorded object", p)
		}
	}
	path := filepath.Join(out, objectsFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return 0, err
	}
	return len(recs), os.WriteFile(path, b.Bytes(), 0o644)
}

// readObjects decodes the scenario's object snapshot.
func readObjects(dir string) ([]*record.Record, error) {
	data, err := os.ReadFile(filepath.Join(dir, objectsFile))
	if err != nil {
		return nil, err
	}
	var recs []*record.Record
	for i, line := range bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n")) {
		r, err := record.Unmarshal(line)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", objectsFile, i+1, err)
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// findingRow is one line of expected-findings.tsv: an open finding of the
// built-in checks over the snapshot.
type findingRow struct {
	Check, Severity, Kind, Namespace, Name string
}

// expectedFindings judges the snapshot in dir with the built-in pack, as
// the posture consumer of `kubesift run` does, and returns its open
// findings in the engine's order (by finding id) and its score.
func expectedFindings(dir string) ([]findingRow, posture.Score, error) {
	recs, err := readObjects(dir)
	if err != nil {
		return nil, posture.Score{}, err
	}
	objs, errs := posture.ObjectsFromRecords(recs)
	if len(errs) > 0 {
		return nil, posture.Score{}, fmt.Errorf("%s: %d objects not judged, first: %w", objectsFile, len(errs), errs[0])
	}
	set, err := rules.Load(rules.LoadOptions{})
	if err != nil {
		return nil, posture.Score{}, fmt.Errorf("load built-in rules: %w", err)
	}
	e := posture.New(set)
	if _, err := e.Replace(snapshotCluster, objs); err != nil {
		return nil, posture.Score{}, err
	}
	var rows []findingRow
	for _, d := range e.Findings(snapshotCluster) {
		rows = append(rows, findingRow{d.CheckID, d.Severity.String(), d.Object.Kind, d.Object.Namespace, d.Object.Name})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].less(&rows[j]) })
	total, _ := e.Score(snapshotCluster)
	return rows, total, nil
}

func (a *findingRow) less(b *findingRow) bool {
	return strings.Join([]string{a.Check, a.Kind, a.Namespace, a.Name}, "\x00") < strings.Join([]string{b.Check, b.Kind, b.Namespace, b.Name}, "\x00")
}

// formatFindings renders expected-findings.tsv: a header, one
// check_id<TAB>severity<TAB>kind<TAB>namespace<TAB>name line per open
// finding, and the score as a last comment line.
func formatFindings(rows []findingRow, total posture.Score) []byte {
	var b bytes.Buffer
	b.WriteString("check_id\tseverity\tkind\tnamespace\tname\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "%s\t%s\t%s\t%s\t%s\n", r.Check, r.Severity, r.Kind, r.Namespace, r.Name)
	}
	fmt.Fprintf(&b, "# score %.1f: %d passed, %d failed\n", total.Percent, total.Passed, total.Failed)
	return b.Bytes()
}

// writeExpectedFindings recomputes expected-findings.tsv from dir's
// snapshot.
func writeExpectedFindings(dir string) error {
	rows, total, err := expectedFindings(dir)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return fmt.Errorf("%s: no open findings: the snapshot is meant to show the benchmark failing somewhere", objectsFile)
	}
	return os.WriteFile(filepath.Join(dir, expectedFindingsFile), formatFindings(rows, total), 0o644)
}
