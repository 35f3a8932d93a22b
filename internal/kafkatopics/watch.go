package kafkatopics

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/kubesift/kubesift/internal/config"
)

// ReadyCheck is the name of the readiness check a Watch sets.
const ReadyCheck = "kafka-topics"

// Watch checks that a component's topics exist, at start and then every
// 10 s while some are missing (every minute once all exist), and says so
// plainly when they do not: one error log naming the missing topics and
// SetupCommand, and the readiness check ReadyCheck failing with the same
// reason until they exist. A component keeps running
// meanwhile — the collector's records wait in its spool, the consumers wait
// for their topics — so a topic created later is picked up without a
// restart. Kafka being unreachable is not reported here (the components'
// own clients report it); the check keeps its last verdict meanwhile.
type Watch struct {
	Kafka config.KafkaConfig
	// Topics are the topics the component reads or writes.
	Topics []string
	// SetReady records the readiness check (obs.Server.SetReady).
	SetReady func(name string, err error)
	Log      *slog.Logger
}

// Intervals between checks: short while a topic is missing, so that the
// component is ready soon after `kubesift setup kafka`; long once all exist,
// where the check only notices a topic deleted under a running component.
var (
	missingInterval = 10 * time.Second
	presentInterval = time.Minute
)

// Run checks until ctx ends; it returns nil then, or an error if the
// kafka section cannot make a client (TLS files, SASL).
func (w Watch) Run(ctx context.Context) error {
	a, err := NewAdmin(w.Kafka, 10*time.Second)
	if err != nil {
		return fmt.Errorf("kafka topics check: %w", err)
	}
	defer a.Close()
	topics := slices.Compact(slices.Sorted(slices.Values(w.Topics)))
	var reported []string // missing topics last logged; nil: none
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		missing, err := a.Missing(ctx, topics)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			w.Log.Debug("kafka topics check: no answer from Kafka", "error", err)
		case len(missing) > 0:
			if !slices.Equal(missing, reported) {
				w.Log.Error("Kafka topics do not exist; waiting for them. Create them with: "+SetupCommand,
					"missing", missing)
			}
			reported = missing
			w.SetReady(ReadyCheck, fmt.Errorf("topics %s do not exist: create them with %s", strings.Join(missing, ", "), SetupCommand))
		default:
			if reported != nil {
				w.Log.Info("Kafka topics exist now", "topics", reported)
			}
			reported = nil
			w.SetReady(ReadyCheck, nil)
		}
		if reported != nil || err != nil {
			t.Reset(missingInterval)
		} else {
			t.Reset(presentInterval)
		}
	}
}

// CollectorTopics are the topics `kubesift collect` writes with the sources
// c enables, and the dead-letter topic.
func CollectorTopics(c *config.Config) []string {
	cc, t := &c.Collector, c.Kafka.Topics
	out := []string{t.DLQ}
	if cc.AuditWebhook.Enabled || cc.AuditTail.Enabled {
		out = append(out, t.Audit)
	}
	if cc.Events.Enabled {
		out = append(out, t.Events)
	}
	if cc.Objects.Enabled {
		out = append(out, t.Objects)
	}
	return out
}

// ProcessorTopics are the topics `kubesift process` reads and writes.
func ProcessorTopics(c *config.Config) []string {
	t := c.Kafka.Topics
	out := append([]string{t.Alerts, t.DLQ}, c.Processor.ConsumedTopics(c.Kafka)...)
	if c.Processor.Posture.Enabled {
		out = append(out, t.Objects)
	}
	if c.Processor.RuleState.Enabled {
		out = append(out, c.Processor.StateTopic())
	}
	return out
}

// NotifierTopics are the topics `kubesift notify` reads and writes.
func NotifierTopics(c *config.Config) []string {
	return []string{c.Kafka.Topics.Alerts, c.Kafka.Topics.DLQ}
}
