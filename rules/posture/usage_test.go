package posture

import (
	"fmt"
	"testing"
	"time"

	"github.com/kubesift/kubesift/rules/rbacusage"
)

// TestUnusedBindingLifecycle: with a window of one hour, a binding of a
// cluster watched for longer opens "unused" by time passing alone
// (RejudgeUsage), resolves the moment a use is observed, reopens when the
// window passes again; re-observing the same use is silent. The
// transitions' versions order as the state index needs. The same holds
// when every step is a complete read (ObserveUsageRejudgeAll, with or
// without uses), as the processor's ticks are.
func TestUnusedBindingLifecycle(t *testing.T) {
	for _, all := range []bool{false, true} {
		t.Run(fmt.Sprintf("rejudge all %v", all), func(t *testing.T) { unusedBindingLifecycle(t, all) })
	}
}

func unusedBindingLifecycle(t *testing.T, all bool) {
	const check = "posture-rbac-unused-binding"
	e := New(builtin(t))
	e.SetUsageWindow(time.Hour)
	now := usageNow
	e.now = func() time.Time { return now }
	e.StartWatch(cl, now.Add(-30*time.Minute))
	b := obj(t, aliceAdmin)
	b.ResourceVersion = "100"
	if ds := apply(t, e, b); has(ds, check, b.UID) {
		t.Fatalf("unused after 30 minutes of watching: %v", ids(ds, ""))
	}
	use := rbacusage.Use{Grant: aliceGrant, Pair: getPods}
	var last Decision
	steps := []struct {
		name    string
		advance time.Duration
		observe bool
		want    []string
	}{
		{"watched for less than the window", 20 * time.Minute, false, nil},
		{"watched for the window, never used", 20 * time.Minute, false, []string{check + ":open"}},
		{"time passes, still unused: silent", time.Hour, false, nil},
		{"used", 0, true, []string{check + ":resolved"}},
		{"the same use again: silent", 0, true, nil},
		{"inside the window after the use", 59 * time.Minute, false, nil},
		{"the window passes again", 2 * time.Minute, false, []string{check + ":reopened"}},
		{"used again", time.Minute, true, []string{check + ":resolved"}},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		var ds []Decision
		var uses []rbacusage.Use
		if s.observe {
			use.At = now
			uses = []rbacusage.Use{use}
		}
		switch {
		case all:
			ds = e.ObserveUsageRejudgeAll(cl, uses)
		case s.observe:
			ds = e.ObserveUsage(cl, uses)
		default:
			ds = e.RejudgeUsage(cl)
		}
		var got []string
		for _, d := range ds {
			if d.CheckID == check {
				got = append(got, check+":"+string(d.State))
				if last.ID != "" && !versionAfter(&last, &d) {
					t.Errorf("%s: version %s (%s) does not order after %s (%s)", s.name, d.ResourceVersion, d.State, last.ResourceVersion, last.State)
				}
				last = d
			}
		}
		if len(got) != len(s.want) || (len(got) > 0 && got[0] != s.want[0]) {
			t.Errorf("%s: %v, want %v", s.name, got, s.want)
		}
	}
	if n := e.UsageTuples(cl); n != 1 {
		t.Errorf("UsageTuples = %d, want 1", n)
	}
	if ch := e.UsageChanged(cl); len(ch) != 1 || !ch[0].LastUsed.Equal(now) {
		t.Errorf("UsageChanged = %+v", ch)
	}
}

// versionAfter: b's state-index version (2 × resourceVersion, +1 when
// resolved) is above a's.
func versionAfter(a, b *Decision) bool {
	v := func(d *Decision) (string, int) {
		if d.State == StateResolved {
			return d.ResourceVersion, 1
		}
		return d.ResourceVersion, 0
	}
	ar, ax := v(a)
	br, bx := v(b)
	if ar == br {
		return bx > ax
	}
	return rvLess(ar, br)
}

// TestRestoreUsageKeepsHistory: a restored use older than the window
// proves the cluster was watched then, so a binding unused since opens at
// once; restored state needs no writing.
func TestRestoreUsageKeepsHistory(t *testing.T) {
	e := New(builtin(t))
	e.now = func() time.Time { return usageNow }
	old := usageNow.Add(-100 * day)
	e.RestoreUsage(cl, time.Time{}, []rbacusage.Usage{{Grant: aliceGrant, LastUsed: old, Pairs: []rbacusage.PairUse{{Pair: getPods, LastUsed: old}}}})
	if ch := e.UsageChanged(cl); len(ch) != 0 {
		t.Errorf("restored usage to write: %+v", ch)
	}
	if got := e.StartWatch(cl, usageNow); !got.Equal(old) {
		t.Errorf("watch start %v, want the restored use's %v", got, old)
	}
	b := obj(t, aliceAdmin)
	if ds := apply(t, e, b); !has(ds, "posture-rbac-unused-binding", b.UID) {
		t.Errorf("binding unused for 100 days: %v", ids(ds, ""))
	}
}

// TestUnusedOnlyUpToTheLastRead: after a restart the stored usage was read
// up to two days ago; a binding last used 91 days ago is not unused until
// the audit trail of the last two days has been read, since its latest use
// may be there.
func TestUnusedOnlyUpToTheLastRead(t *testing.T) {
	const check = "posture-rbac-unused-binding"
	e := New(builtin(t))
	e.now = func() time.Time { return usageNow }
	last := usageNow.Add(-91 * day)
	e.RestoreUsage(cl, usageNow.Add(-200*day), []rbacusage.Usage{{Grant: aliceGrant, LastUsed: last, Pairs: []rbacusage.PairUse{{Pair: getPods, LastUsed: last}}}})
	e.UsageReadTo(cl, usageNow.Add(-2*day))
	b := obj(t, aliceAdmin)
	if ds := apply(t, e, b); has(ds, check, b.UID) {
		t.Fatalf("unused before the last two days were read: %v", ids(ds, ""))
	}
	e.UsageReadTo(cl, usageNow)
	if ds := e.RejudgeUsage(cl); !has(ds, check, b.UID) {
		t.Errorf("not unused once read up to now: %v", ids(ds, ""))
	}
}
