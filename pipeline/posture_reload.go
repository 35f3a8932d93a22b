package pipeline

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/rules"
)

// ReloadChecks gives the posture engine the object checks of set — the set
// the record rules engine just reloaded, compiled once for both — and
// writes the transitions judging every cluster's inventory with them
// causes (posture.Engine.SetChecks): findings of a removed check resolve,
// a new check's open, and alerts are raised as for any transition. Every
// partition's clusters are scored again at their next score tick. It
// returns once those transitions are written, or with an error when ctx
// ended or one of them was not (the engine keeps the new checks either
// way; the next rebuild writes what is missing).
func (c *PostureConsumer) ReloadChecks(ctx context.Context, set *rules.Set) error {
	byCluster := c.o.Engine.SetChecks(set)
	c.checksGen.Add(1)
	clusters := make([]string, 0, len(byCluster))
	n := 0
	for cl, ds := range byCluster {
		clusters = append(clusters, cl)
		n += len(ds)
	}
	sort.Strings(clusters)
	h := newBatchHold()
	// No message caused these: a dead letter of one of them names
	// partition and offset -1.
	orig := kafka.Message{Topic: c.topic, Partition: -1, Offset: -1}
	now := time.Now()
	for _, cl := range clusters {
		c.emit(ctx, h, nil, orig, byCluster[cl], now)
	}
	if !h.wait(ctx) {
		return errors.New("posture: checks reloaded, but not every transition they caused was written")
	}
	c.log.Info("posture checks reloaded", "checks", len(set.ObjectChecks()), "clusters", len(clusters), "transitions", n)
	return nil
}
