package rbacusage

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// heapMiB is the live heap after a full collection.
func heapMiB() float64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc) / (1 << 20)
}

// benchUses are the observations of bindings × pairs: every binding used
// by one ServiceAccount for pairs drawn from 8 verbs × 60 resources, the
// variety of a real cluster.
func benchUses(bindings, pairs int) func(yield func(Use) bool) {
	verbs := []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	return func(yield func(Use) bool) {
		at := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
		for b := range bindings {
			ns := fmt.Sprintf("team-%d", b%500)
			g := Grant{
				Binding: Ref{Kind: "RoleBinding", Namespace: ns, Name: fmt.Sprintf("binding-%d", b)},
				Role:    Ref{Kind: "ClusterRole", Name: fmt.Sprintf("role-%d", b%300)},
				Subject: Subject{Kind: "ServiceAccount", Namespace: ns, Name: fmt.Sprintf("sa-%d", b)},
			}
			for p := range pairs {
				i := (b*7 + p*13) % (len(verbs) * 60)
				pr := Pair{Verb: verbs[i%len(verbs)], APIGroup: "apps.example.com", Resource: fmt.Sprintf("resource%d", i/len(verbs))}
				if !yield(Use{g, pr, at.Add(time.Duration(b*pairs+p) * time.Second)}) {
					return
				}
			}
		}
	}
}

// naive is the obvious layout the Table is measured against: one map per
// binding from each pair (strings and all) to its time.
type naive map[Grant]map[Pair]time.Time

func (n naive) observe(u Use) {
	m := n[u.Grant]
	if m == nil {
		m = map[Pair]time.Time{}
		n[u.Grant] = m
	}
	if u.At.After(m[u.Pair]) {
		m[u.Pair] = u.At
	}
}

// BenchmarkTableMemory: the usage state of 10,000 bindings × 50
// verb/resource pairs must stay under 100 MiB. It prints the live heap
// with an empty Table (empty-MiB, the baseline), what the full Table adds
// to it (table-MiB) and what the naive per-binding map layout adds
// (naive-MiB), all measured in this run.
func BenchmarkTableMemory(b *testing.B) {
	const bindings, pairs = 10_000, 50
	for range b.N {
		base := heapMiB()
		n := naive{}
		for u := range benchUses(bindings, pairs) {
			n.observe(u)
		}
		naiveMiB := heapMiB() - base
		runtime.KeepAlive(n)
		n = nil
		tb := NewTable()
		base = heapMiB()
		for u := range benchUses(bindings, pairs) {
			tb.Observe(u)
		}
		tb.TakeChanged()
		tableMiB := heapMiB() - base
		if tb.Len() != bindings {
			b.Fatalf("%d tuples", tb.Len())
		}
		runtime.KeepAlive(tb)
		b.ReportMetric(base, "empty-MiB")
		b.ReportMetric(tableMiB, "table-MiB")
		b.ReportMetric(naiveMiB, "naive-MiB")
		if tableMiB >= 100 {
			b.Errorf("usage state of %d bindings × %d pairs: %.1f MiB, want < 100", bindings, pairs, tableMiB)
		}
	}
}

// BenchmarkObserve is the cost of merging one use into a full table.
func BenchmarkObserve(b *testing.B) {
	tb := NewTable()
	var uses []Use
	for u := range benchUses(10_000, 50) {
		tb.Observe(u)
		uses = append(uses, u)
	}
	b.ResetTimer()
	for i := range b.N {
		u := uses[i%len(uses)]
		u.At = u.At.Add(time.Duration(i) * time.Second)
		tb.Observe(u)
	}
}
