package config

import (
	"strings"
	"testing"
	"time"
)

// TestDigestConfig: a digest section parses with its defaults, and each
// mistake is an error naming its field.
func TestDigestConfig(t *testing.T) {
	env := map[string]string{"HOOK_URL": "https://hooks.example.com/x"}
	c, err := parseNotify(t, notifyBase+`
  digest:
    schedule: "08:00"
    timezone: Europe/Berlin
    receivers: [sec, hook]
    clusters: [prod]
    dir: /var/lib/kubesift/digests
`, env)
	if err != nil {
		t.Fatal(err)
	}
	d := c.Notify.Digest
	loc, err := d.Location()
	if !d.Enabled() || err != nil || loc.String() != "Europe/Berlin" || d.Period != 24*time.Hour || d.Index != "kubesift-digests" || d.ClaimTimeout != 2*time.Hour || d.Dir != "/var/lib/kubesift/digests" {
		t.Errorf("digest %+v, %v", d, err)
	}
	if c, err := parseNotify(t, notifyBase, env); err != nil || c.Notify.Digest.Enabled() {
		t.Errorf("no digest section: enabled %v, %v", c.Notify.Digest.Enabled(), err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{`{schedule: "8am", receivers: [sec]}`, `notify.digest.schedule: "8am" is not HH:MM`},
		{`{schedule: "24:00", receivers: [sec]}`, `notify.digest.schedule`},
		{`{schedule: "8:00", receivers: [sec]}`, `notify.digest.schedule`},
		{`{schedule: "08:00", timezone: Mars/Olympus, receivers: [sec]}`, `notify.digest.timezone: "Mars/Olympus"`},
		{`{schedule: "08:00"}`, `notify.digest.receivers: at least one`},
		{`{schedule: "08:00", receivers: [sec, nobody]}`, `notify.digest.receivers[1]: no receiver is named "nobody"`},
		{`{schedule: "08:00", receivers: [sec], clusters: [""]}`, `notify.digest.clusters[0]`},
		{`{schedule: "08:00", receivers: [sec], period: 0s}`, `notify.digest.period`},
		{`{schedule: "08:00", receivers: [sec], claim_timeout: -1m}`, `notify.digest.claim_timeout`},
		{`{schedule: "08:00", receivers: [sec], claim_timeout: 1h}`, `notify.digest.claim_timeout: must be longer than notify.retry.give_up_after (1h0m0s)`},
		{`{schedule: "08:00", receivers: [sec], index: Digests}`, `notify.digest.index`},
	} {
		_, err := parseNotify(t, notifyBase+"  digest: "+tc.yaml+"\n", env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestParseSchedule(t *testing.T) {
	for _, tc := range []struct {
		in     string
		h, m   int
		wantOK bool
	}{{"08:00", 8, 0, true}, {"23:59", 23, 59, true}, {"00:00", 0, 0, true}, {"8:00", 0, 0, false}, {"08:60", 0, 0, false}, {"", 0, 0, false}} {
		h, m, err := ParseSchedule(tc.in)
		if (err == nil) != tc.wantOK || h != tc.h || m != tc.m {
			t.Errorf("ParseSchedule(%q) = %d, %d, %v", tc.in, h, m, err)
		}
	}
}
