package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kubesift/kubesift/collector/objects"
)

// scenario is one recording run.
type scenario struct {
	env   map[string]string
	track *tracker
	sfx   string // per-run suffix of the namespaces (a deleted namespace stays Terminating on the ground)

	shop, payments, ops string // namespaces
	nodes               []string

	// identities: preroll and phaseSetup make them, phasePersist the backdoor
	admin, scaffold, dev             *actor
	ci, attacker, impersonator, anon *actor
	bogus                            []*actor
	auditor, backdoor                *actor
	lbs                              []*actor
	monitors                         []*actor
	deployCtl, rsCtl, dsCtl          *actor
	ciToken, auditorToken, promToken string
	promToken2                       string
	backdoorToken                    string
	ctlTokens                        map[string]string
	ev                               *eventLog
	bg                               sync.WaitGroup
	stopBG                           context.CancelFunc
	pods                             map[string][]podRef // ReplicaSet or DaemonSet (ns/name) -> its pods
	extra                            map[string]string   // facts the story passes between steps
	mu                               sync.Mutex
}

// recordScenario runs the whole scenario and writes the files to out.
func recordScenario(ctx context.Context, env map[string]string, out string) error {
	s := &scenario{env: env, track: &tracker{ids: map[string]bool{}}, pods: map[string][]podRef{}, extra: map[string]string{}}
	s.sfx = randSuffix()
	s.shop, s.payments, s.ops = "shop-"+s.sfx, "payments-"+s.sfx, "ops-"+s.sfx
	logPath := env["KUBESIFT_AUDIT_LOG"]
	st, err := os.Stat(logPath)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	offset := st.Size()
	log.Printf("recording namespaces %s, %s, %s; audit log %s from byte %d", s.shop, s.payments, s.ops, logPath, offset)

	if err := s.preroll(ctx); err != nil {
		return fmt.Errorf("pre-roll: %w", err)
	}
	s.ev = newEventLog(s.scaffold)
	if err := s.ev.start(ctx); err != nil {
		return fmt.Errorf("events watch: %w", err)
	}
	storyErr := s.runStory(ctx)
	s.stopBackground()
	var listing *objects.Listing
	if storyErr == nil {
		listing, storyErr = s.listObjects(ctx)
	}
	// Clean up what would harm other users of the shared ground, whatever
	// happened (untracked: not part of the recording).
	cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
	s.cleanup(cctx)
	ccancel()
	if storyErr != nil {
		return storyErr
	}
	events, err := s.ev.finish(ctx)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}

	// The log backend is blocking (written before the response is sent);
	// a moment more lets the last ResponseComplete of closed watches land.
	time.Sleep(2 * time.Second)
	lines, missing, err := s.extract(logPath, offset)
	if err != nil {
		return err
	}
	if missing > 0 {
		return fmt.Errorf("%d of the recorder's requests have no line in the audit log", missing)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, auditFile), lines, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, eventsFile), events, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, plantedFile), []byte(strings.Join(plantedValues, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	log.Printf("wrote %s (%d lines, %d bytes) and %s (%d lines, %d bytes)", auditFile, bytes.Count(lines, []byte("\n")), len(lines),
		eventsFile, bytes.Count(events, []byte("\n")), len(events))
	nobj, err := writeObjects(out, listing, createdUIDs(lines), plantedValues)
	if err != nil {
		return err
	}
	if err := writeExpectedFindings(out); err != nil {
		return err
	}
	log.Printf("wrote %s (%d objects) and %s", objectsFile, nobj, expectedFindingsFile)

	// Check what the files hold: every document decodes, no planted value
	// survives redaction, every rule of the story fired.
	recs, err := decodeScenario(out)
	if err != nil {
		return err
	}
	planted, err := readPlanted(out)
	if err != nil {
		return err
	}
	for _, p := range planted {
		if bytes.Contains(lines, []byte(base64.StdEncoding.EncodeToString([]byte(p)))) {
			return fmt.Errorf("planted value %q appears base64-encoded in the audit log: the audit policy recorded a Secret body", p)
		}
	}
	if err := checkRedaction(recs, planted); err != nil {
		return err
	}
	counts, err := computeExpected(out)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, expectedFile), formatExpected(counts), 0o644); err != nil {
		return err
	}
	printSummary(counts)
	return checkStoryRules(counts)
}

// extract copies the lines of the audit log written after offset whose
// auditID the recorder sent, unchanged. missing counts tracked requests that
// left no line.
func (s *scenario) extract(path string, offset int64) ([]byte, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if st.Size() < offset {
		return nil, 0, fmt.Errorf("audit log %s shrank from %d to %d bytes during the run (rotated?); record again", path, offset, st.Size())
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, 0, err
	}
	var out bytes.Buffer
	seen := map[string]bool{}
	rd := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := rd.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var head struct {
				AuditID string `json:"auditID"`
			}
			if json.Unmarshal(line, &head) == nil && s.track.has(head.AuditID) {
				out.Write(line)
				seen[head.AuditID] = true
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, err
		}
	}
	s.track.mu.Lock()
	missing := len(s.track.ids) - len(seen)
	s.track.mu.Unlock()
	return out.Bytes(), missing, nil
}

// checkStoryRules fails loudly when a rule the story means to fire did not.
func checkStoryRules(counts []alertCount) error {
	fired := map[string]bool{}
	for _, c := range counts {
		fired[c.Rule] = true
	}
	var missing []string
	for _, sr := range storyRules {
		if !fired[sr.rule] {
			missing = append(missing, fmt.Sprintf("  %s (step %q)", sr.rule, sr.step))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%d rules of the story did not fire:\n%s", len(missing), strings.Join(missing, "\n"))
	}
	return nil
}

func printSummary(counts []alertCount) {
	bySev := map[string]int{}
	total := 0
	for _, c := range counts {
		bySev[c.Severity] += c.Count
		total += c.Count
	}
	log.Printf("%d alerts from %d rules: critical %d, high %d, medium %d, low %d, info %d", total, len(counts),
		bySev["critical"], bySev["high"], bySev["medium"], bySev["low"], bySev["info"])
	for _, c := range counts {
		log.Printf("  %-42s %-8s %d", c.Rule, c.Severity, c.Count)
	}
}
