package config

import (
	"fmt"
	"time"
)

// DigestConfig schedules the daily digest (pipeline.Digester): once a day
// at Schedule in Timezone, one message per cluster through the named
// receivers with the cluster's figures over the Period before that time.
// One notifier replica sends each (cluster, day): docs/alerting.md.
type DigestConfig struct {
	// Schedule is the local time of day, "HH:MM" (24 h); empty disables
	// the digest.
	Schedule string `yaml:"schedule"`
	// Timezone is an IANA zone name ("Europe/Berlin"); empty is UTC.
	Timezone string `yaml:"timezone"`
	// Receivers name the receivers (notify.receivers) the digest goes to.
	Receivers []string `yaml:"receivers"`
	// Clusters limits the digest to these clusters; empty: every cluster
	// with documents in the period.
	Clusters []string `yaml:"clusters"`
	// Period is what one digest covers, ending at the scheduled time.
	Period time.Duration `yaml:"period"`
	// Index holds one document per (cluster, day): the claim that makes
	// exactly one replica send it.
	Index string `yaml:"index"`
	// Dir, when set, is where the sending replica also writes each digest
	// as a report file (notify.DigestFile): a volume the replicas share.
	Dir string `yaml:"dir"`
	// ClaimTimeout is how long a claim of a replica that has not finished
	// sending stands before another replica may take it over; longer than
	// notify.retry.give_up_after.
	ClaimTimeout time.Duration `yaml:"claim_timeout"`
}

// Enabled reports whether a digest is scheduled.
func (c *DigestConfig) Enabled() bool { return c.Schedule != "" }

// Location is the schedule's time zone (UTC when none is set).
func (c *DigestConfig) Location() (*time.Location, error) {
	if c.Timezone == "" {
		return time.UTC, nil
	}
	return time.LoadLocation(c.Timezone)
}

// ParseSchedule splits "HH:MM" into hour and minute.
func ParseSchedule(s string) (hour, minute int, err error) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != len("15:04") {
		return 0, 0, fmt.Errorf("%q is not HH:MM (24 h)", s)
	}
	return t.Hour(), t.Minute(), nil
}

func defaultDigest() DigestConfig {
	return DigestConfig{Period: 24 * time.Hour, Index: "kubesift-digests", ClaimTimeout: 2 * time.Hour}
}

// validate adds the digest's problems to v; receivers are the names
// notify.receivers defines, giveUp notify.retry.give_up_after.
func (c *DigestConfig) validate(v *validator, receivers map[string]bool, giveUp time.Duration) {
	if !c.Enabled() {
		return
	}
	if _, _, err := ParseSchedule(c.Schedule); err != nil {
		v.add("notify.digest.schedule", err.Error())
	}
	if _, err := c.Location(); err != nil {
		v.add("notify.digest.timezone", fmt.Sprintf("%q is not a known time zone", c.Timezone))
	}
	if len(c.Receivers) == 0 {
		v.add("notify.digest.receivers", "at least one receiver is required")
	}
	for i, r := range c.Receivers {
		if !receivers[r] {
			v.add(fmt.Sprintf("notify.digest.receivers[%d]", i), fmt.Sprintf("no receiver is named %q", r))
		}
	}
	for i, cl := range c.Clusters {
		if cl == "" {
			v.add(fmt.Sprintf("notify.digest.clusters[%d]", i), "must not be empty")
		}
	}
	if c.Period <= 0 {
		v.add("notify.digest.period", "must be positive")
	}
	if c.ClaimTimeout <= giveUp {
		// A claim must outlive its owner's retries, or a slow send is
		// taken over and the digest sent twice.
		v.add("notify.digest.claim_timeout", fmt.Sprintf("must be longer than notify.retry.give_up_after (%s)", giveUp))
	}
	if msg := validIndexName(c.Index); msg != "" {
		v.add("notify.digest.index", msg)
	}
}
