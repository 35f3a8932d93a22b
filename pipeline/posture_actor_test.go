package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
)

// fakeActors is an audit store: the actor of a change is found once the
// test made it known, and a change of an object named in fail fails.
type fakeActors struct {
	mu    sync.Mutex
	known map[string]*posture.Actor // actorKey -> author
	fail  map[string]bool
	calls map[string]int
}

func newFakeActors() *fakeActors {
	return &fakeActors{known: map[string]*posture.Actor{}, fail: map[string]bool{}, calls: map[string]int{}}
}

func actorKey(kind, ns, name string, deleted bool) string {
	k := kind + "/" + ns + "/" + name
	if deleted {
		k += "/deleted"
	}
	return k
}

func (f *fakeActors) find(_ context.Context, ch ActorChange) (*posture.Actor, error) {
	k := actorKey(ch.Kind, ch.Namespace, ch.Name, ch.Deleted)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[k]++
	if f.fail[k] {
		return nil, errors.New("search audit: 503 unavailable")
	}
	return f.known[k], nil
}

func (f *fakeActors) set(k string, a *posture.Actor) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.known[k] = a
}

func (f *fakeActors) called(k string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[k]
}

// finding is the stored state of the finding of check on uid.
func (f *fakeFindings) finding(cluster, check, uid string) (posture.Decision, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.states[cluster+"/"+check+"/"+uid]
	return d, ok
}

// TestPostureActorOrders runs the posture consumer with a fake audit
// store through the orders a change and its audit record can arrive in:
// audit first, object first within processor.posture.actor_wait, never
// (the findings are written without actor when the wait ends), an object
// of the initial list (one lookup, then pre-existing), a failing lookup,
// a resolution emitted while another change's lookup waits,
// and a deleted NetworkPolicy, whose deleter becomes the actor of the
// Namespace finding it reopens. The alert of a finding carries its actor.
func TestPostureActorOrders(t *testing.T) {
	kc := fakeKafka(t, 2, kfake.SeedTopics(2, topicObjects))
	brokers := kc.ListenAddrs()
	ff, fa := newFakeFindings(), newFakeActors()
	ow := newObjectsWriter(t, brokers, topicObjects)
	const cl = "prod"
	const nsCheck, privCheck = "posture-namespace-without-network-policy", "posture-privileged-container"
	const wait = 8 * time.Second
	// Before the consumer starts, so the rebuild judges it: the namespace
	// and its NetworkPolicy pass.
	ow.put(cl, "v1", "Namespace", "", "shop", "ns-uid", "10", namespaceJSON("shop"))
	ow.put(cl, "networking.k8s.io/v1", "NetworkPolicy", "shop", "deny", "np-uid", "11", netpolJSON("shop"))
	reg := prometheus.NewRegistry()
	startPosture(t, brokers, "posture-actor", ff, reg, func(o *PostureOptions) {
		o.Actors = fa.find
		o.Processor.Posture.ActorWait = wait
	})
	testenv.WaitFor(t, "rebuild", 20*time.Second, func() bool { return testenv.Metric(t, reg, "kubesift_posture_rebuilds_total") == 2 })

	alice := &posture.Actor{User: "alice", Verb: "patch", Groups: []string{"dev"}, UserAgent: "kubectl/v1.33", SourceIP: "10.0.0.1", AuditID: "a-1"}
	bob := &posture.Actor{User: "bob", UserAgent: "terraform", AuditID: "a-2"}
	put := func(name, uid, rv string, initial bool) {
		r, err := record.NewObject(record.ObjectRef{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: name, UID: uid, ResourceVersion: rv},
			[]byte(podJSON("shop", name, true)), record.Cluster{Name: cl}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		r.InitialList = initial
		ow.send(r)
	}
	tests := []struct {
		name   string
		do     func()
		check  string
		uid    string
		want   *posture.Actor
		result string
		calls  string // actorKey whose lookups are counted
		once   bool   // exactly one lookup
	}{
		{"audit first", func() {
			fa.set(actorKey("Pod", "shop", "a", false), alice)
			put("a", "a-uid", "20", false)
		}, privCheck, "a-uid", alice, actorFound, "", false},
		{"object first, audit within the wait", func() {
			k := actorKey("Pod", "shop", "b", false)
			put("b", "b-uid", "21", false)
			testenv.WaitFor(t, "first lookup of b", 10*time.Second, func() bool { return fa.called(k) > 0 })
			// A resolution does not wait behind it.
			ow.put(cl, "v1", "Pod", "shop", "a", "a-uid", "25", podJSON("shop", "a", false))
			testenv.WaitFor(t, "a resolves", 10*time.Second, func() bool { return ff.state(cl, privCheck, "a-uid") == posture.StateResolved })
			if _, written := ff.finding(cl, privCheck, "b-uid"); written {
				t.Error("finding of b written before its actor was known or the wait ended")
			}
			fa.set(k, bob)
		}, privCheck, "b-uid", bob, actorFound, "", false},
		{"never: the wait ends", func() { put("c", "c-uid", "22", false) }, privCheck, "c-uid", nil, actorNotFound, "", false},
		{"initial list: one lookup, then pre-existing", func() { put("d", "d-uid", "23", true) },
			privCheck, "d-uid", &posture.Actor{PreExisting: true}, actorPreExisting, actorKey("Pod", "shop", "d", false), true},
		{"lookup error", func() {
			fa.mu.Lock()
			fa.fail[actorKey("Pod", "shop", "e", false)] = true
			fa.mu.Unlock()
			put("e", "e-uid", "24", false)
		}, privCheck, "e-uid", nil, actorError, "", false},
		{"deleted NetworkPolicy: its deleter opens the Namespace finding", func() {
			fa.set(actorKey("NetworkPolicy", "shop", "deny", true), alice)
			ow.del(cl, "networking.k8s.io/v1", "NetworkPolicy", "shop", "deny", "np-uid", "11")
		}, nsCheck, "ns-uid", alice, actorFound, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := testenv.Metric(t, reg, "kubesift_posture_actor_lookups_total", "result", tc.result)
			tc.do()
			var d posture.Decision
			testenv.WaitFor(t, "finding written", 20*time.Second, func() bool {
				var ok bool
				d, ok = ff.finding(cl, tc.check, tc.uid)
				return ok && d.Open()
			})
			if !sameActor(d.Actor, tc.want) {
				t.Errorf("actor %+v, want %+v", d.Actor, tc.want)
			}
			if got := testenv.Metric(t, reg, "kubesift_posture_actor_lookups_total", "result", tc.result); got != before+1 {
				t.Errorf("actor_lookups_total{result=%q} went from %v to %v, want one more", tc.result, before, got)
			}
			if tc.once {
				if n := fa.called(tc.calls); n != 1 {
					t.Errorf("%d lookups, want 1", n)
				}
			}
		})
	}

	// The alerts of the privileged findings name their actors.
	byUID := map[string]rules.Alert{}
	testenv.WaitFor(t, "alerts of the five privileged findings", 20*time.Second, func() bool {
		for _, m := range testenv.ReadTopic(t, brokers[0], topicAlerts) {
			var a rules.Alert
			if err := json.Unmarshal(m.Value, &a); err != nil {
				t.Fatal(err)
			}
			byUID[a.Name] = a
		}
		return len(byUID) == 5
	})
	for _, tc := range []struct {
		pod, user, agent, ip, auditID string
		preExisting                   bool
	}{
		{"a", "alice", "kubectl/v1.33", "10.0.0.1", "a-1", false},
		{"b", "bob", "terraform", "", "a-2", false},
		{"c", "", "", "", "", false},
		{"d", "", "", "", "", true},
	} {
		a := byUID[tc.pod]
		pre := false
		for _, tag := range a.Tags {
			pre = pre || tag == "pre-existing"
		}
		if a.User != tc.user || a.Verb != map[string]string{"alice": "patch"}[tc.user] || a.UserAgent != tc.agent || a.SourceIP != tc.ip || a.AuditID != tc.auditID || pre != tc.preExisting {
			t.Errorf("alert of pod %s: user %q agent %q ip %q audit %q tags %v", tc.pod, a.User, a.UserAgent, a.SourceIP, a.AuditID, a.Tags)
		}
	}
}

func sameActor(a, b *posture.Actor) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// TestPostureActorLookupsFull: with every lookup slot taken, an object of
// the initial list is pre-existing without a search (it was there when the
// collector listed it), and any other change goes out at once without
// actor; neither waits for a slot.
func TestPostureActorLookupsFull(t *testing.T) {
	kc := fakeKafka(t, 1, kfake.SeedTopics(1, topicObjects))
	brokers := kc.ListenAddrs()
	ff := newFakeFindings()
	ow := newObjectsWriter(t, brokers, topicObjects)
	const cl, privCheck = "prod", "posture-privileged-container"
	release := make(chan struct{})
	defer close(release)
	var searched sync.Map
	reg := prometheus.NewRegistry()
	startPosture(t, brokers, "posture-actor-full", ff, reg, func(o *PostureOptions) {
		o.maxLookups = 1
		o.Processor.Posture.ActorWait = time.Minute
		o.Actors = func(ctx context.Context, ch ActorChange) (*posture.Actor, error) {
			searched.Store(ch.Name, true)
			if ch.Name == "holder" {
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
			return nil, nil
		}
	})
	testenv.WaitFor(t, "rebuild", 20*time.Second, func() bool { return testenv.Metric(t, reg, "kubesift_posture_rebuilds_total") == 1 })
	put := func(name, rv string, initial bool) {
		r, err := record.NewObject(record.ObjectRef{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: name, UID: name + "-uid", ResourceVersion: rv},
			[]byte(podJSON("shop", name, true)), record.Cluster{Name: cl}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		r.InitialList = initial
		ow.send(r)
	}
	put("holder", "20", false)
	testenv.WaitFor(t, "the holder's lookup", 10*time.Second, func() bool { _, ok := searched.Load("holder"); return ok })

	tests := []struct {
		name, pod, rv string
		initial       bool
		want          *posture.Actor
		result        string
	}{
		{"initial list: pre-existing", "listed", "21", true, &posture.Actor{PreExisting: true}, actorPreExisting},
		{"a change: no actor", "changed", "22", false, nil, actorGivenUp},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := testenv.Metric(t, reg, "kubesift_posture_actor_lookups_total", "result", tc.result)
			put(tc.pod, tc.rv, tc.initial)
			var d posture.Decision
			testenv.WaitFor(t, "finding written", 20*time.Second, func() bool {
				var ok bool
				d, ok = ff.finding(cl, privCheck, tc.pod+"-uid")
				return ok && d.Open()
			})
			if !sameActor(d.Actor, tc.want) {
				t.Errorf("actor %+v, want %+v", d.Actor, tc.want)
			}
			if _, ok := searched.Load(tc.pod); ok {
				t.Error("searched although every slot was taken")
			}
			if got := testenv.Metric(t, reg, "kubesift_posture_actor_lookups_total", "result", tc.result); got != before+1 {
				t.Errorf("actor_lookups_total{result=%q} went from %v to %v, want one more", tc.result, before, got)
			}
		})
	}
}
