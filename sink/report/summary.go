package report

import (
	"context"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules"
)

// Source aggregates one store's documents within a window.
type Source interface {
	Summary(ctx context.Context, w Window) (*Summary, error)
}

// Window bounds the documents a report covers by @timestamp: From
// inclusive, To exclusive; a zero bound is open. Posture is the current
// state and is not windowed.
type Window struct{ From, To time.Time }

// Contains reports whether t is within w.
func (w Window) Contains(t time.Time) bool {
	return (w.From.IsZero() || !t.Before(w.From)) && (w.To.IsZero() || t.Before(w.To))
}

// Indices names the data streams and indices a report reads: the same
// names the processor writes to (sink.elasticsearch), which are also the
// NDJSON file names of `kubesift run` (<index>.ndjson).
type Indices struct {
	Audit, Events, Alerts, Findings, Scores string
	// Transitions is the finding transitions stream (the digest's
	// findings opened and resolved).
	Transitions string
}

// IndicesFrom takes the names from the Elasticsearch sink's configuration.
func IndicesFrom(c config.ElasticsearchConfig) Indices {
	return Indices{Audit: c.Streams.Audit, Events: c.Streams.Events, Alerts: c.AlertsIndex,
		Findings: c.Findings.Index, Scores: c.Findings.ScoresStream, Transitions: c.Findings.TransitionsStream}
}

// Lengths of the top lists. A longer list would not be read, and these
// bound the page's size whatever the store holds.
const (
	TopRules   = 15
	TopActors  = 10
	TopReasons = 15
	TopChecks  = 25
	TopAlerts  = 50
	// maxClusters bounds the posture scores shown, one per cluster.
	maxClusters = 20
	MaxBuckets  = 60
	maxTactics  = 8
	numSeverity = int(rules.SeverityCritical)
)

// Summary is what a report shows. Counts are documents; Other* are the
// documents of entries beyond a top list.
type Summary struct {
	Source string // the folder or the Elasticsearch address, for the header
	Window Window

	AuditRecords, Events, Alerts int64
	// BySeverity counts alerts, index rules.Severity-1.
	BySeverity [numSeverity]int64
	Timeline   Timeline

	Rules       []RuleCount
	OtherRules  int64
	Actors      []ActorCount
	OtherActors int64
	Reasons     []ReasonCount
	OtherEvents int64

	// Posture is nil when the store holds no findings and no scores.
	Posture *Posture
	// TopAlerts are the most severe alerts, the latest first within a
	// severity.
	TopAlerts []Alert

	// Skipped counts the lines Dir could not read; SkippedSamples names
	// the first few by file and line.
	Skipped        int64
	SkippedSamples []string
	// Notes say what a bound folded away.
	Notes []string
}

// Timeline counts alerts per bucket of Width from Start, by severity.
type Timeline struct {
	Start  time.Time
	Width  time.Duration
	Counts [][numSeverity]int64
}

// RuleCount is one rule's alerts.
type RuleCount struct {
	ID, Name string
	Severity rules.Severity // the highest of its alerts
	Tactics  []string       // MITRE ATT&CK tactic names, sorted
	Count    int64
}

// ActorCount is one user's alerts.
type ActorCount struct {
	User     string
	Severity rules.Severity // the highest of their alerts
	Count    int64
}

// ReasonCount is one Event reason's occurrences.
type ReasonCount struct {
	Reason   string
	Count    int64
	Warnings int64 // of type Warning
}

// Posture is the current posture: the latest cluster score of each
// cluster and the checks with open findings.
type Posture struct {
	Scores []Score
	// Open counts findings open or reopened; Findings every finding known.
	Open, Findings int64
	Failing        []Check
	OtherFailing   int64
}

// Score is one cluster's latest posture score.
type Score struct {
	Cluster        string
	Percent        float64
	Passed, Failed int64
	At             time.Time
}

// Check is a posture check with open findings.
type Check struct {
	ID, Title string
	Severity  rules.Severity
	Open      int64
}

// Alert is one row of the highest-severity alerts.
type Alert struct {
	ID        string
	Time      time.Time
	Severity  rules.Severity
	RuleID    string
	RuleName  string
	Message   string
	User      string
	Cluster   string
	Namespace string
	Object    string // resource/name
	Tactics   []string
}

// widthLadder holds the timeline's bucket widths, each a multiple of the
// one before, so a bucket of one width is a whole number of buckets of
// every narrower one and Dir can widen its histogram as it reads (see
// histogram.widen) yet end on the width ES chooses from the span up front.
var widthLadder = []time.Duration{
	time.Second, 2 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 7 * 24 * time.Hour, 28 * 24 * time.Hour, 364 * 24 * time.Hour,
}

// bucketOf is the index of t's bucket of width w, counted from the Unix
// epoch (floor division, so times before 1970 bucket correctly too).
func bucketOf(t time.Time, w time.Duration) int64 {
	s, ws := t.Unix(), int64(w/time.Second)
	q := s / ws
	if s%ws < 0 {
		q--
	}
	return q
}

// widthFor is the narrowest ladder width at which first..last spans at
// most MaxBuckets buckets (the widest when none does).
func widthFor(first, last time.Time) int {
	for i, w := range widthLadder {
		if bucketOf(last, w)-bucketOf(first, w) < MaxBuckets {
			return i
		}
	}
	return len(widthLadder) - 1
}

// severityIndex maps a severity to its BySeverity slot, or -1.
func severityIndex(s rules.Severity) int {
	if s < rules.SeverityInfo || s > rules.SeverityCritical {
		return -1
	}
	return int(s) - 1
}
