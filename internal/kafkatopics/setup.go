package kafkatopics

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/segmentio/kafka-go"
)

// Options say which kinds of drift Setup may change.
type Options struct {
	// ApplyDrift alters retention.ms, min.insync.replicas and a
	// max.message.bytes smaller than wanted.
	ApplyDrift bool
	// GrowPartitions adds partitions to a topic that has fewer than wanted
	// (not the objects topic).
	GrowPartitions bool
}

// Topic actions in a Report.
const (
	ActionCreated   = "created"
	ActionUnchanged = "unchanged"
	ActionChanged   = "changed" // drift found and all of it applied
	ActionDrift     = "drift"   // drift left as it is
)

// How a drift is (or can be) resolved.
const (
	FixApplied        = "applied"
	FixApplyDrift     = "--apply-drift"
	FixGrowPartitions = "--grow-partitions"
	FixManual         = "manual"
)

// Report is what Setup did, topic by topic.
type Report struct {
	Topics []TopicReport `json:"topics"`
}

// TopicReport is one topic's outcome.
type TopicReport struct {
	Role              string            `json:"role"`
	Name              string            `json:"name"`
	Action            string            `json:"action"`
	Partitions        int               `json:"partitions"`
	ReplicationFactor int               `json:"replication_factor"`
	Configs           map[string]string `json:"configs"`
	Drift             []Drift           `json:"drift,omitempty"`
}

// Drift is one setting of an existing topic that differs from the
// configuration.
type Drift struct {
	// Setting is "partitions", "replication_factor" or a config key.
	Setting string `json:"setting"`
	Want    string `json:"want"`
	Have    string `json:"have"`
	// Fix is FixApplied, or the flag that would apply it, or FixManual
	// with Hint saying what to do.
	Fix  string `json:"fix"`
	Hint string `json:"hint,omitempty"`
}

// Changed reports whether Setup created or altered anything.
func (r Report) Changed() bool {
	for _, t := range r.Topics {
		if t.Action == ActionCreated || t.Action == ActionChanged || slices.ContainsFunc(t.Drift, func(d Drift) bool { return d.Fix == FixApplied }) {
			return true
		}
	}
	return false
}

// Unresolved is the number of drifts left as they are.
func (r Report) Unresolved() int {
	n := 0
	for _, t := range r.Topics {
		for _, d := range t.Drift {
			if d.Fix != FixApplied {
				n++
			}
		}
	}
	return n
}

// Setup creates the missing topics of specs and compares the existing ones
// with them, applying the drift o allows (package doc). The report lists
// every topic; an error means a request failed, and the report holds what
// was done before it.
func (a *Admin) Setup(ctx context.Context, specs []Spec, o Options) (Report, error) {
	act, err := a.Describe(ctx, specs)
	if err != nil {
		return Report{}, err
	}
	var missing []Spec
	for _, s := range specs {
		if !act[s.Name].Exists {
			missing = append(missing, s)
		}
	}
	created, err := a.create(ctx, missing)
	if err != nil {
		return Report{}, err
	}
	if len(created) < len(missing) {
		// Created by someone else meanwhile: compare those too.
		if act, err = a.Describe(ctx, specs); err != nil {
			return Report{}, err
		}
	}
	var rep Report
	for _, s := range specs {
		tr := TopicReport{Role: s.Role, Name: s.Name, Action: ActionUnchanged}
		if created[s.Name] {
			tr.Action, tr.Partitions, tr.ReplicationFactor, tr.Configs = ActionCreated, s.Partitions, s.ReplicationFactor, maps.Clone(s.Configs)
			rep.Topics = append(rep.Topics, tr)
			continue
		}
		have := act[s.Name]
		tr.Partitions, tr.ReplicationFactor, tr.Configs = have.Partitions, have.ReplicationFactor, have.Configs
		tr.Drift = compare(s, have)
		err := a.apply(ctx, s, tr.Drift, o)
		if len(tr.Drift) > 0 {
			tr.Action = ActionChanged
			for _, d := range tr.Drift {
				if d.Fix != FixApplied {
					tr.Action = ActionDrift
				}
			}
		}
		rep.Topics = append(rep.Topics, tr)
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// create creates specs' topics and returns the names it created; a topic
// that exists by the time the request arrives is left out.
func (a *Admin) create(ctx context.Context, specs []Spec) (map[string]bool, error) {
	done := map[string]bool{}
	if len(specs) == 0 {
		return done, nil
	}
	req := &kafka.CreateTopicsRequest{}
	for _, s := range specs {
		tc := kafka.TopicConfig{Topic: s.Name, NumPartitions: s.Partitions, ReplicationFactor: s.ReplicationFactor}
		for _, k := range slices.Sorted(maps.Keys(s.Configs)) {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: s.Configs[k]})
		}
		req.Topics = append(req.Topics, tc)
	}
	res, err := a.c.CreateTopics(ctx, req)
	if err != nil {
		return done, fmt.Errorf("kafka create topics: %w", err)
	}
	var errs []error
	for _, s := range specs {
		err := res.Errors[s.Name]
		switch {
		case err == nil:
			done[s.Name] = true
		case errors.Is(err, kafka.TopicAlreadyExists):
		case errors.Is(err, kafka.InvalidReplicationFactor):
			errs = append(errs, fmt.Errorf("create topic %s with replication factor %d: %w (set kafka.topic_settings.replication_factor to at most the number of brokers; 1 for a single broker)",
				s.Name, s.ReplicationFactor, err))
		default:
			errs = append(errs, fmt.Errorf("create topic %s: %w", s.Name, err))
		}
	}
	return done, errors.Join(errs...)
}

// compare lists how an existing topic differs from s; each Drift's Fix is
// the flag that would apply it, or FixManual.
func compare(s Spec, have Actual) []Drift {
	var out []Drift
	if have.Partitions < s.Partitions {
		d := Drift{Setting: "partitions", Want: strconv.Itoa(s.Partitions), Have: strconv.Itoa(have.Partitions), Fix: FixGrowPartitions,
			Hint: "adding partitions moves keys to other partitions"}
		if s.Role == RoleRuleState {
			d.Hint = "the changelog is placed by partition number, not by key: growing it moves nothing, and input partitions without theirs are not processed"
		}
		if s.Role == "objects" {
			d.Fix, d.Hint = FixManual, "not grown by setup: the objects topic keeps each cluster in one partition and each object's versions together for compaction; "+
				"create a new topic with more partitions and point kafka.topics.objects at it"
		}
		out = append(out, d)
	}
	if have.ReplicationFactor != s.ReplicationFactor {
		out = append(out, Drift{Setting: "replication_factor", Want: strconv.Itoa(s.ReplicationFactor), Have: strconv.Itoa(have.ReplicationFactor),
			Fix: FixManual, Hint: "change it with a partition reassignment (kafka-reassign-partitions.sh)"})
	}
	for _, k := range slices.Sorted(maps.Keys(s.Configs)) {
		want, got := s.Configs[k], have.Configs[k]
		if want == got {
			continue
		}
		d := Drift{Setting: k, Want: want, Have: got, Fix: FixApplyDrift}
		switch k {
		case CleanupPolicy:
			d.Fix, d.Hint = FixManual, "never changed by setup: it decides which records Kafka deletes; alter it yourself if you mean to (kafka-configs.sh --alter --add-config "+k+"="+want+")"
		case MaxMessageBytes:
			w, _ := strconv.ParseInt(want, 10, 64)
			if h, err := strconv.ParseInt(got, 10, 64); err == nil && h > w {
				continue // larger than needed takes every batch too
			}
		}
		out = append(out, d)
	}
	return out
}

// apply makes the drifts o allows, marking them FixApplied.
func (a *Admin) apply(ctx context.Context, s Spec, drift []Drift, o Options) error {
	var alter []kafka.IncrementalAlterConfigsRequestConfig
	var alterIdx []int
	for i, d := range drift {
		switch {
		case d.Fix == FixApplyDrift && o.ApplyDrift:
			alter = append(alter, kafka.IncrementalAlterConfigsRequestConfig{Name: d.Setting, Value: d.Want, ConfigOperation: kafka.ConfigOperationSet})
			alterIdx = append(alterIdx, i)
		case d.Fix == FixGrowPartitions && o.GrowPartitions:
			res, err := a.c.CreatePartitions(ctx, &kafka.CreatePartitionsRequest{
				Topics: []kafka.TopicPartitionsConfig{{Name: s.Name, Count: int32(s.Partitions)}}})
			if err == nil {
				err = res.Errors[s.Name]
			}
			if err != nil {
				return fmt.Errorf("grow topic %s to %d partitions: %w", s.Name, s.Partitions, err)
			}
			drift[i].Fix = FixApplied
		}
	}
	if len(alter) == 0 {
		return nil
	}
	res, err := a.c.IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{
		Resources: []kafka.IncrementalAlterConfigsRequestResource{{ResourceType: kafka.ResourceTypeTopic, ResourceName: s.Name, Configs: alter}}})
	if err == nil {
		for _, r := range res.Resources {
			if r.Error != nil {
				err = r.Error
			}
		}
	}
	if err != nil {
		return fmt.Errorf("alter configs of topic %s: %w", s.Name, err)
	}
	for _, i := range alterIdx {
		drift[i].Fix = FixApplied
	}
	return nil
}
