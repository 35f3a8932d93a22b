package posture

import (
	"sort"
	"strconv"
	"strings"
)

// Section is one group of a report: the checks of one CIS section ("5.1"),
// or, with an empty ID, the programme's own checks that have no CIS item.
type Section struct {
	ID    string
	Title string
	// Passed and Failed count (check, object) verdicts, as Score does.
	Passed, Failed int
	// Findings are the section's open findings, sorted by check, then
	// object kind, namespace and name.
	Findings []Decision
}

// sectionTitles name the CIS Kubernetes Benchmark sections the pack's checks
// fall in; a section missing here is shown by its number alone.
var sectionTitles = map[string]string{
	"1.2": "API server",
	"1.3": "Controller manager",
	"1.4": "Scheduler",
	"2":   "etcd",
	"5.1": "RBAC and service accounts",
	"5.2": "Pod security",
	"5.3": "Network policies",
	"5.4": "Secrets management",
	"5.5": "Extensible admission control",
	"5.7": "General policies",
}

// programmeTitle names the group of checks without a CIS item.
const programmeTitle = "Programme checks (no CIS item)"

// sectionOf is the CIS section of an item: its first two numbers ("5.1.3"
// is in 5.1), or the item itself when it has fewer ("2.1" is in 2, as CIS
// numbers etcd's items). A check naming several items is grouped by the
// first.
func sectionOf(cis []string) string {
	if len(cis) == 0 {
		return ""
	}
	parts := strings.Split(cis[0], ".")
	if len(parts) < 3 {
		return parts[0]
	}
	return parts[0] + "." + parts[1]
}

// Report groups the cluster's verdicts and open findings by CIS section, in
// section order (1.2 before 5.1 before 5.10), the programme's checks last.
// Like Score it walks stored verdicts and evaluates nothing.
func (e *Engine) Report(cluster string) []Section {
	byID := map[string]*Section{}
	get := func(id string) *Section {
		s := byID[id]
		if s == nil {
			s = &Section{ID: id, Title: sectionTitles[id]}
			if id == "" {
				s.Title = programmeTitle
			}
			byID[id] = s
		}
		return s
	}
	cs := e.cluster(cluster)
	cs.mu.Lock()
	for _, ent := range cs.inv.objs {
		for i, ch := range cs.cks.checks {
			if !bit(ent.evaluated, i) {
				continue
			}
			s := get(sectionOf(ch.rule.CIS))
			if bit(ent.failed, i) {
				s.Failed++
			} else {
				s.Passed++
			}
		}
	}
	cs.mu.Unlock()
	for _, d := range e.Findings(cluster) {
		s := get(sectionOf(d.CIS))
		s.Findings = append(s.Findings, d)
	}
	out := make([]Section, 0, len(byID))
	for _, s := range byID {
		sort.Slice(s.Findings, func(i, j int) bool { return findingLess(&s.Findings[i], &s.Findings[j]) })
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return sectionLess(out[i].ID, out[j].ID) })
	return out
}

func findingLess(a, b *Decision) bool {
	x := [...]string{a.CheckID, a.Object.Kind, a.Object.Namespace, a.Object.Name, a.Object.UID}
	y := [...]string{b.CheckID, b.Object.Kind, b.Object.Namespace, b.Object.Name, b.Object.UID}
	for i := range x {
		if x[i] != y[i] {
			return x[i] < y[i]
		}
	}
	return false
}

// sectionLess orders section numbers numerically, "" (the programme's
// checks) last.
func sectionLess(a, b string) bool {
	if a == "" || b == "" {
		return b == "" && a != ""
	}
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) && i < len(pb); i++ {
		x, _ := strconv.Atoi(pa[i])
		y, _ := strconv.Atoi(pb[i])
		if x != y {
			return x < y
		}
	}
	return len(pa) < len(pb)
}
