package posture

import (
	"slices"
	"testing"
)

func TestSectionOf(t *testing.T) {
	tests := []struct {
		cis  []string
		want string
	}{
		{nil, ""},
		{[]string{"5.1.3"}, "5.1"},
		{[]string{"1.2.29"}, "1.2"},
		{[]string{"2.1"}, "2"},
		{[]string{"5.2.2", "1.2.1"}, "5.2"},
	}
	for _, tc := range tests {
		if got := sectionOf(tc.cis); got != tc.want {
			t.Errorf("sectionOf(%v) = %q, want %q", tc.cis, got, tc.want)
		}
	}
	ids := []string{"", "5.10", "5.2", "2", "1.2", "5.1", "1.4"}
	slices.SortFunc(ids, func(a, b string) int {
		switch {
		case sectionLess(a, b):
			return -1
		case sectionLess(b, a):
			return 1
		}
		return 0
	})
	if want := []string{"1.2", "1.4", "2", "5.1", "5.2", "5.10", ""}; !slices.Equal(ids, want) {
		t.Errorf("section order %v, want %v", ids, want)
	}
}

// TestReport: verdicts and findings are grouped by CIS section, counts add
// up to Score's, and findings of one section are sorted by check.
func TestReport(t *testing.T) {
	e := New(builtin(t))
	bad := with(t, obj(t, goodDeployment), "spec.template.spec.hostPID", true)
	bad = with(t, bad, "spec.template.spec.containers.0.image", "docker.io/app:latest")
	if _, err := e.Replace("prod", append(goodShop(t), bad)); err != nil {
		t.Fatal(err)
	}
	sections := e.Report("prod")
	total, _ := e.Score("prod")
	passed, failed, findings := 0, 0, 0
	var order []string
	byID := map[string]Section{}
	for _, s := range sections {
		passed += s.Passed
		failed += s.Failed
		findings += len(s.Findings)
		order = append(order, s.ID)
		byID[s.ID] = s
		if !slices.IsSortedFunc(s.Findings, func(a, b Decision) int {
			if findingLess(&b, &a) {
				return 1
			}
			return 0
		}) {
			t.Errorf("section %s: findings not sorted", s.ID)
		}
	}
	if passed != total.Passed || failed != total.Failed || findings != len(e.Findings("prod")) {
		t.Errorf("report %d passed, %d failed, %d findings; score %d, %d; findings %d",
			passed, failed, findings, total.Passed, total.Failed, len(e.Findings("prod")))
	}
	if order[len(order)-1] != "" || byID[""].Title != programmeTitle || byID["5.2"].Title != "Pod security" {
		t.Errorf("sections %v", order)
	}
	if got := ids(byID["5.2"].Findings, bad.UID); !slices.Contains(got, "posture-host-pid:open") {
		t.Errorf("5.2 findings %v, want posture-host-pid", got)
	}
	if got := ids(byID[""].Findings, bad.UID); !slices.Contains(got, "posture-mutable-image-tag:open") {
		t.Errorf("programme findings %v, want posture-mutable-image-tag", got)
	}
}
