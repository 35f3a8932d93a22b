package posture

import (
	"testing"
	"time"
)

// TestTransitionsCarryOpeningTimes: every transition of a finding carries
// when it first opened and when it last opened, a resolve included, so the
// state document a writer replaces whole on each transition stays complete;
// a restarted engine takes them back through Restore.
func TestTransitionsCarryOpeningTimes(t *testing.T) {
	const check = "posture-host-pid"
	at := func(min int) time.Time { return time.Date(2026, 12, 6, 10, min, 0, 0, time.UTC) }
	good := obj(t, goodDeployment)
	bad := with(t, good, "spec.template.spec.hostPID", true)
	fixed := with(t, bad, "spec.template.spec.hostPID", false)
	badAgain := with(t, fixed, "spec.template.spec.hostPID", true)
	observed := func(o Object, tm time.Time) Object { o.Observed = tm; return o }

	e := New(builtin(t))
	e.now = func() time.Time { return at(59) } // the clock, for causes without an observed time
	for _, o := range goodShop(t) {
		apply(t, e, o)
	}
	type step struct {
		what            string
		do              func() []Decision
		state           State
		first, openedAt time.Time
	}
	steps := []step{
		{"opens", func() []Decision { return apply(t, e, observed(bad, at(1))) }, StateOpen, at(1), at(1)},
		{"resolves", func() []Decision { return apply(t, e, observed(fixed, at(2))) }, StateResolved, at(1), at(1)},
		{"reopens", func() []Decision { return apply(t, e, observed(badAgain, at(3))) }, StateReopened, at(1), at(3)},
		{"object deleted", func() []Decision { return e.Delete(cl, "Deployment", "shop", "web") }, StateResolved, at(1), at(3)},
		{"opens without an observed time", func() []Decision { return apply(t, e, bad) }, StateOpen, at(59), at(59)},
	}
	var last Decision
	for _, s := range steps {
		var d *Decision
		for _, x := range s.do() {
			if x.CheckID == check {
				d = &x
			}
		}
		if d == nil || d.State != s.state {
			t.Fatalf("%s: %s decision %+v, want %s", s.what, check, d, s.state)
		}
		if !d.FirstSeen.Equal(s.first) || !d.OpenedAt.Equal(s.openedAt) {
			t.Errorf("%s: first_seen %v opened_at %v, want %v and %v", s.what, d.FirstSeen, d.OpenedAt, s.first, s.openedAt)
		}
		last = *d
	}

	// A restarted engine: the state written last is restored, and the
	// rebuild that finds the object fixed resolves it with the restored
	// times.
	e2 := New(builtin(t))
	e2.Restore(cl, []Decision{last})
	objs := append(goodShop(t)[:3], observed(with(t, bad, "spec.template.spec.hostPID", false), at(4)))
	ds, err := e2.Replace(cl, objs)
	if err != nil {
		t.Fatal(err)
	}
	var resolved *Decision
	for _, d := range ds {
		if d.CheckID == check {
			resolved = &d
		}
	}
	if resolved == nil || resolved.State != StateResolved || !resolved.FirstSeen.Equal(at(59)) || !resolved.OpenedAt.Equal(at(59)) {
		t.Errorf("after Restore and Replace: %+v, want resolved with first_seen and opened_at %v", resolved, at(59))
	}
}
