package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// eventLog writes the scenario's Events through the events.k8s.io/v1 API, as
// the kubelet, the scheduler and the controllers would (the ground has none
// of them), and records every version a watch delivers, as the Events
// collector's informer sees them: a series bump is a new version with a
// higher count.
type eventLog struct {
	a *actor

	mu       sync.Mutex
	seen     []*eventsv1.Event          // every ADDED/MODIFIED, in watch order
	lastRV   map[string]string          // ns/name -> resourceVersion seen last
	want     map[string]string          // ns/name -> resourceVersion of our last write
	current  map[string]*eventsv1.Event // ns/name -> our latest version
	watchErr error
	stop     context.CancelFunc
	done     chan struct{}
}

func newEventLog(a *actor) *eventLog {
	return &eventLog{a: a, lastRV: map[string]string{}, want: map[string]string{}, current: map[string]*eventsv1.Event{}}
}

func evKey(ns, name string) string { return ns + "/" + name }

// start opens a cluster-wide watch from the current resourceVersion.
func (l *eventLog) start(ctx context.Context) error {
	list, err := l.a.cs.EventsV1().Events("").List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return err
	}
	rv := list.ResourceVersion
	wctx, cancel := context.WithCancel(context.Background())
	l.stop, l.done = cancel, make(chan struct{})
	go func() {
		defer close(l.done)
		for wctx.Err() == nil {
			w, err := l.a.cs.EventsV1().Events("").Watch(wctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
			if err != nil {
				if wctx.Err() == nil {
					l.mu.Lock()
					l.watchErr = err
					l.mu.Unlock()
				}
				return
			}
			for e := range w.ResultChan() {
				switch e.Type {
				case watch.Added, watch.Modified:
					ev, ok := e.Object.(*eventsv1.Event)
					if !ok {
						continue
					}
					rv = ev.ResourceVersion
					l.mu.Lock()
					l.seen = append(l.seen, ev.DeepCopy())
					l.lastRV[evKey(ev.Namespace, ev.Name)] = ev.ResourceVersion
					l.mu.Unlock()
				case watch.Bookmark:
					if ev, ok := e.Object.(*eventsv1.Event); ok {
						rv = ev.ResourceVersion
					}
				case watch.Error:
					// An expired resourceVersion would lose versions: fail.
					l.mu.Lock()
					l.watchErr = fmt.Errorf("watch error: %v", e.Object)
					l.mu.Unlock()
					w.Stop()
					return
				}
			}
		}
	}()
	return nil
}

// emit creates an Event as reporter would (eventTime now).
func (l *eventLog) emit(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	now := metav1.NewMicroTime(time.Now())
	ev.EventTime = now
	if ev.Name == "" {
		ev.Name = fmt.Sprintf("%s.%x", ev.Regarding.Name, time.Now().UnixNano())
	}
	if ev.Namespace == "" {
		ev.Namespace = "default"
	}
	out, err := l.a.cs.EventsV1().Events(ev.Namespace).Create(ctx, ev, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create event %s %s: %w", ev.Reason, ev.Regarding.Name, err)
	}
	l.note(out)
	return out, nil
}

// bump records n more occurrences of ev (a series, as the event recorders
// report repeats) and returns the new version.
func (l *eventLog) bump(ctx context.Context, ns, name string, n int32) error {
	l.mu.Lock()
	cur := l.current[evKey(ns, name)]
	l.mu.Unlock()
	if cur == nil {
		return fmt.Errorf("bump of unknown event %s/%s", ns, name)
	}
	ev := cur.DeepCopy()
	count := int32(1)
	if ev.Series != nil {
		count = ev.Series.Count
	}
	ev.Series = &eventsv1.EventSeries{Count: count + n, LastObservedTime: metav1.NewMicroTime(time.Now())}
	out, err := l.a.cs.EventsV1().Events(ns).Update(ctx, ev, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("bump event %s/%s: %w", ns, name, err)
	}
	l.note(out)
	return nil
}

func (l *eventLog) note(ev *eventsv1.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := evKey(ev.Namespace, ev.Name)
	l.want[k] = ev.ResourceVersion
	l.current[k] = ev.DeepCopy()
}

// finish waits until the watch delivered our last write of every Event,
// stops it and returns our Events' versions as NDJSON, in watch order.
func (l *eventLog) finish(ctx context.Context) ([]byte, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		l.mu.Lock()
		err := l.watchErr
		pending := 0
		for k, rv := range l.want {
			if l.lastRV[k] != rv {
				pending++
			}
		}
		l.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the watch did not deliver %d of our Events' last versions within 15s", pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.stop()
	<-l.done
	var b bytes.Buffer
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ev := range l.seen {
		if _, ours := l.want[evKey(ev.Namespace, ev.Name)]; !ours {
			continue // another test's Event on the shared ground
		}
		ev.APIVersion, ev.Kind = "events.k8s.io/v1", "Event"
		line, err := json.Marshal(ev)
		if err != nil {
			return nil, err
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}
