package pipeline

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/rules/posture"
)

// ActorChange is the change whose author the posture consumer looks up:
// one version of one object as the objects topic reported it. It is the
// changed object, not the finding's: a NetworkPolicy deleted opens its
// Namespace's finding, and the NetworkPolicy's deleter is the actor.
type ActorChange struct {
	Cluster, Kind, Namespace, Name string
	// ResourceVersion is the record's: the new version of a write, the
	// last version seen of a deleted object.
	ResourceVersion string
	Deleted         bool
	// ObservedAt is when the collector saw the change.
	ObservedAt time.Time
}

// ActorFinder returns who made ch, from the audit records
// (sink/elasticsearch.FindActor on the audit data stream), or nil and no
// error while no audit record matches.
type ActorFinder func(ctx context.Context, ch ActorChange) (*posture.Actor, error)

// Results of kubesift_posture_actor_lookups_total: one per live change
// whose transitions opened or reopened findings.
const (
	actorFound       = "found"
	actorNotFound    = "not_found"    // the wait ended without a match
	actorError       = "error"        // the last search failed
	actorPreExisting = "pre_existing" // an initial-list object without a match
	actorGivenUp     = "given_up"     // too many lookups waiting, or the partition was revoked
)

// maxActorLookups bounds the lookups waiting at once over all partitions.
// Each holds its message's transitions (and its window slot) for up to
// processor.posture.actor_wait; past the bound a change's findings are
// written at once, without actor, so a burst of changes never stalls the
// partition loop behind the audit pipeline.
const maxActorLookups = 256

// actorRetry paces the searches of one lookup: the audit record of a
// change is usually searchable within a second or two (the API server's
// webhook batch, the processor's bulk, the index refresh).
var actorRetry = backoff.Policy{Initial: 200 * time.Millisecond, Max: 2 * time.Second}

// emitLive emits the transitions ds of one live change. Resolutions are
// emitted at once; transitions that open or reopen findings wait, off the
// partition loop and under pm, for the change's actor (findActor) and are
// then emitted with it. gen is the partition's generation: a revoked
// partition stops waiting.
func (c *PostureConsumer) emitLive(gen, work context.Context, pm *pending, part *partition, m kafka.Message,
	ds []posture.Decision, at time.Time, ch *ActorChange, initial bool) {
	var opening, rest []posture.Decision
	for _, d := range ds {
		if d.State == posture.StateResolved {
			rest = append(rest, d)
		} else {
			opening = append(opening, d)
		}
	}
	if len(opening) == 0 || c.o.Actors == nil || c.pc.Posture.ActorWait <= 0 {
		c.emit(work, pm, part, m, ds, at)
		return
	}
	c.emit(work, pm, part, m, rest, at)
	select {
	case c.actorSlots <- struct{}{}:
	default:
		// An object of the initial list was there when the collector
		// listed it, which is what pre-existing says; the search could
		// only have named a recent author. Any other change is unknown.
		if initial {
			c.m.actorLookups.WithLabelValues(actorPreExisting).Inc()
			c.emit(work, pm, part, m, c.withActor(opening, &posture.Actor{PreExisting: true}), at)
			return
		}
		c.m.actorLookups.WithLabelValues(actorGivenUp).Inc()
		c.lim.Warn(c.log, "actor-full", "too many actor lookups waiting; findings written without actor",
			"limit", maxActorLookups, "cluster", ch.Cluster, "kind", ch.Kind)
		c.emit(work, pm, part, m, opening, at)
		return
	}
	pm.add()
	go func() {
		a := c.findActor(gen, ch, initial)
		<-c.actorSlots
		c.emit(work, pm, part, m, c.withActor(opening, a), at)
		pm.finish(true)
	}()
}

// withActor puts a on the opening transitions ds and in the engine's
// state of their findings (nil, unknown, leaves them as they are).
func (c *PostureConsumer) withActor(ds []posture.Decision, a *posture.Actor) []posture.Decision {
	if a == nil {
		return ds
	}
	for i := range ds {
		ds[i].Actor = a
		c.o.Engine.SetActor(&ds[i], a)
	}
	return ds
}

// findActor searches for the author of ch until one is found or
// processor.posture.actor_wait has passed since the first search. An
// object of the initial list is searched once: its change may be older
// than any audit record kept, so no match means PreExisting. nil means
// unknown.
func (c *PostureConsumer) findActor(ctx context.Context, ch *ActorChange, initial bool) *posture.Actor {
	deadline := time.Now().Add(c.pc.Posture.ActorWait)
	var err error
	for n := 1; ; n++ {
		try, cancel := context.WithDeadline(ctx, deadline)
		var a *posture.Actor
		a, err = c.o.Actors(try, *ch)
		cancel()
		switch {
		case err == nil && a != nil:
			c.m.actorLookups.WithLabelValues(actorFound).Inc()
			return a
		case err == nil && initial:
			c.m.actorLookups.WithLabelValues(actorPreExisting).Inc()
			return &posture.Actor{PreExisting: true}
		}
		wait := actorRetry.Wait(n)
		if initial || ctx.Err() != nil || time.Until(deadline) < wait {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	switch {
	case ctx.Err() != nil:
		c.m.actorLookups.WithLabelValues(actorGivenUp).Inc()
	case err != nil:
		c.m.actorLookups.WithLabelValues(actorError).Inc()
		c.lim.Warn(c.log, "actor", "actor lookup failed; findings written without actor", "cluster", ch.Cluster,
			"kind", ch.Kind, "namespace", ch.Namespace, "name", ch.Name, "err", err)
	default:
		c.m.actorLookups.WithLabelValues(actorNotFound).Inc()
	}
	return nil
}
