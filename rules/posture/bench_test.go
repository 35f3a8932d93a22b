package posture

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user+system CPU time: on a shared machine it
// says what an evaluation costs when wall time also holds others' load.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// threadCPU is the calling thread's CPU time (the caller locks its OS
// thread): a change's own cost, without the time others' load kept it
// off the CPU.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD
	if syscall.Getrusage(rusageThread, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// synthetic is a cluster of 50,000 objects: 2,000 namespaces (half with a
// default-deny policy, half enforcing Pod Security), 30,000 Pods (90% owned
// by ReplicaSets, as in a real cluster), 5,000 RBAC objects (some
// ClusterRoles aggregated, some bindings to cluster-admin), and Deployments,
// StatefulSets, DaemonSets, CronJobs, Jobs, Services and ServiceAccounts.
func synthetic() []Object {
	var out []Object
	uid := 0
	add := func(apiVersion, kind, ns, name string, body map[string]any) {
		uid++
		md := map[string]any{"name": name, "uid": strconv.Itoa(uid)}
		if ns != "" {
			md["namespace"] = ns
		}
		for k, v := range asMap(body["metadata"]) {
			md[k] = v
		}
		body["metadata"], body["kind"], body["apiVersion"] = md, kind, apiVersion
		out = append(out, Object{APIVersion: apiVersion, Kind: kind, Namespace: ns, Name: name, UID: strconv.Itoa(uid), ResourceVersion: "1", Body: body})
	}
	const namespaces = 2000
	nsName := func(i int) string { return fmt.Sprintf("team-%04d", i%namespaces) }
	for i := 0; i < namespaces; i++ {
		lbl := map[string]any{}
		if i%2 == 0 {
			lbl["pod-security.kubernetes.io/enforce"] = "restricted"
		}
		add("v1", "Namespace", "", nsName(i), map[string]any{"metadata": map[string]any{"labels": lbl}})
		add("v1", "ServiceAccount", nsName(i), "default", map[string]any{})
		if i%2 == 0 {
			add("networking.k8s.io/v1", "NetworkPolicy", nsName(i), "deny-all",
				map[string]any{"spec": map[string]any{"podSelector": map[string]any{}, "policyTypes": []any{"Ingress", "Egress"}}})
		}
	}
	template := func(i int) map[string]any {
		c := map[string]any{"name": "app", "image": fmt.Sprintf("registry.k8s.io/app-%d:1.%d", i%50, i%7),
			"resources": map[string]any{"limits": map[string]any{"cpu": "1", "memory": "1Gi"}}}
		switch i % 10 {
		case 0:
			c["securityContext"] = map[string]any{"privileged": true}
		case 1:
			c["image"] = "nginx"
		case 2:
			c["env"] = []any{map[string]any{"name": "P", "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": "s", "key": "k"}}}}
		default:
			c["securityContext"] = map[string]any{"allowPrivilegeEscalation": false, "capabilities": map[string]any{"drop": []any{"ALL"}}}
		}
		spec := map[string]any{"serviceAccountName": fmt.Sprintf("app-%d", i%3), "containers": []any{c},
			"securityContext": map[string]any{"runAsNonRoot": true, "seccompProfile": map[string]any{"type": "RuntimeDefault"}}}
		if i%25 == 0 {
			spec["hostNetwork"] = true
		}
		return spec
	}
	for i := 0; i < 30000; i++ {
		md := map[string]any{}
		if i%10 != 0 {
			md["ownerReferences"] = []any{map[string]any{"kind": "ReplicaSet", "name": "rs", "controller": true}}
		}
		add("v1", "Pod", nsName(i), fmt.Sprintf("pod-%d", i), map[string]any{"metadata": md, "spec": template(i)})
	}
	workloads := []struct {
		apiVersion, kind string
		n                int
	}{{"apps/v1", "Deployment", 5000}, {"apps/v1", "StatefulSet", 1000}, {"apps/v1", "DaemonSet", 100}, {"batch/v1", "Job", 500}}
	for _, w := range workloads {
		for i := 0; i < w.n; i++ {
			add(w.apiVersion, w.kind, nsName(i*7), fmt.Sprintf("%s-%d", strings.ToLower(w.kind), i),
				map[string]any{"spec": map[string]any{"template": map[string]any{"spec": template(i)}}})
		}
	}
	for i := 0; i < 400; i++ {
		add("batch/v1", "CronJob", nsName(i*11), fmt.Sprintf("cron-%d", i), map[string]any{"spec": map[string]any{
			"jobTemplate": map[string]any{"spec": map[string]any{"template": map[string]any{"spec": template(i)}}}}})
	}
	for i := 0; i < 2000; i++ {
		add("v1", "Service", nsName(i), fmt.Sprintf("svc-%d", i), map[string]any{"spec": map[string]any{"type": "ClusterIP"}})
	}
	for i := 0; i < 1000; i++ { // accounts some workloads run as (with the defaults: 3,000)
		add("v1", "ServiceAccount", nsName(i), fmt.Sprintf("app-%d", i%3), map[string]any{})
	}
	// RBAC: 500 ClusterRoles (10 aggregating the labelled ones), 500
	// ClusterRoleBindings, 2,000 Roles and 2,000 RoleBindings.
	rule := func(i int) []any {
		verbs := []any{"get", "list", "watch"}
		res := []any{"pods", "configmaps"}
		if i%9 == 0 {
			res = append(res, "secrets")
		}
		if i%13 == 0 {
			verbs = []any{"*"}
		}
		return []any{map[string]any{"apiGroups": []any{""}, "resources": res, "verbs": verbs}}
	}
	add("rbac.authorization.k8s.io/v1", "ClusterRole", "", "cluster-admin", map[string]any{
		"metadata": map[string]any{"labels": map[string]any{"kubernetes.io/bootstrapping": "rbac-defaults"}},
		"rules":    []any{map[string]any{"apiGroups": []any{"*"}, "resources": []any{"*"}, "verbs": []any{"*"}}}})
	for i := 0; i < 499; i++ {
		body := map[string]any{"rules": rule(i), "metadata": map[string]any{"labels": map[string]any{"agg": strconv.Itoa(i % 10)}}}
		if i < 10 {
			body = map[string]any{"aggregationRule": map[string]any{"clusterRoleSelectors": []any{
				map[string]any{"matchLabels": map[string]any{"agg": strconv.Itoa(i)}}}}}
		}
		add("rbac.authorization.k8s.io/v1", "ClusterRole", "", fmt.Sprintf("cr-%d", i), body)
	}
	for i := 0; i < 500; i++ {
		role := fmt.Sprintf("cr-%d", i%499)
		if i%50 == 0 {
			role = "cluster-admin"
		}
		add("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", fmt.Sprintf("crb-%d", i), map[string]any{
			"roleRef":  map[string]any{"kind": "ClusterRole", "name": role},
			"subjects": []any{map[string]any{"kind": "ServiceAccount", "namespace": nsName(i * 3), "name": fmt.Sprintf("app-%d", i%3)}}})
	}
	for i := 0; i < 2000; i++ {
		add("rbac.authorization.k8s.io/v1", "Role", nsName(i), "role", map[string]any{"rules": rule(i)})
		add("rbac.authorization.k8s.io/v1", "RoleBinding", nsName(i), "rb", map[string]any{
			"roleRef":  map[string]any{"kind": "Role", "name": "role"},
			"subjects": []any{map[string]any{"kind": "ServiceAccount", "name": "app-0"}, map[string]any{"kind": "User", "name": "dev"}}})
	}
	return out
}

func heapMiB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// peakRSSMiB is the process's high-water RSS (VmHWM), 0 where /proc is absent.
func peakRSSMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}

// BenchmarkFullEvaluation judges the synthetic 50,000-object cluster from
// scratch (Replace: what a rebuild or a scan costs). Baseline in the same
// run: building the inventory without judging. Targets: under 10 s on 2
// cores, under 600 MiB.
func BenchmarkFullEvaluation(b *testing.B) {
	set := builtin(b)
	objs := synthetic()
	if len(objs) != 50000 {
		b.Fatalf("synthetic cluster has %d objects, want 50,000", len(objs))
	}
	objsHeap := heapMiB()
	var build, full, cpu time.Duration
	var findings int
	var heap float64
	for i := 0; i < b.N; i++ {
		start := time.Now()
		inv := newInventory()
		for j := range objs {
			inv.put(&entry{obj: objs[j]}, inv.objs[keyOf(&objs[j])])
		}
		build += time.Since(start)
		inv = nil
		e := New(set)
		start, c0 := time.Now(), cpuTime()
		if _, err := e.Replace("bench", objs); err != nil {
			b.Fatal(err)
		}
		full += time.Since(start)
		cpu += cpuTime() - c0
		findings = len(e.Findings("bench"))
		heap = heapMiB()
		runtime.KeepAlive(e)
	}
	n := time.Duration(b.N)
	b.ReportMetric((full / n).Seconds(), "s/full-eval")
	b.ReportMetric((cpu / n).Seconds(), "cpu-s/full-eval")
	b.ReportMetric((build / n).Seconds(), "s/inventory-only(baseline)")
	b.ReportMetric(heap, "MiB-heap")
	b.ReportMetric(peakRSSMiB(), "MiB-peak-RSS")
	b.Logf("50,000 objects: full evaluation %v wall, %v CPU (baseline, inventory build without judging: %v); %d open findings; "+
		"heap after %0.f MiB (objects alone %0.f MiB); peak RSS of the process %0.f MiB", full/n, cpu/n, build/n, findings, heap, objsHeap, peakRSSMiB())
}

// BenchmarkChange measures one object change to its decisions on the loaded
// synthetic cluster, over a mix of changes (a Deployment broken and fixed, a
// NetworkPolicy created and deleted, a ClusterRoleBinding rebound, a Role
// edited, an owned Pod's new resourceVersion, a Namespace relabelled).
// Baseline in the same run: judging one Deployment with all its checks.
// Target: p99 under 5 ms.
func BenchmarkChange(b *testing.B) {
	objs := synthetic()
	e := New(builtin(b))
	if _, err := e.Replace("bench", objs); err != nil {
		b.Fatal(err)
	}
	byKind := map[string][]Object{}
	for _, o := range objs {
		byKind[o.Kind] = append(byKind[o.Kind], o)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rv := 100
	next := func(o Object, path string, v any) Object {
		o = with(b, o, path, v)
		rv++
		o.ResourceVersion = strconv.Itoa(rv)
		return o
	}
	cs := e.cluster("bench")
	var base time.Duration
	deps := byKind["Deployment"]
	for i := 0; i < 1000; i++ {
		ent := cs.inv.objs[keyOf(&deps[rng.IntN(len(deps))])]
		start := time.Now()
		e.judgeAll(cs, ent, ent.obj.ResourceVersion, time.Time{}, nil)
		base += time.Since(start)
	}
	base /= 1000
	lat := make([]time.Duration, 0, b.N)
	cpu := make([]time.Duration, 0, b.N)
	byType := make([][]time.Duration, 6)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var o Object
		del := false
		switch i % 6 {
		case 0:
			d := deps[rng.IntN(len(deps))]
			o = next(d, "spec.template.spec.hostPID", i%12 == 0)
		case 1:
			ns := byKind["Namespace"][rng.IntN(len(byKind["Namespace"]))]
			o = Object{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy", Namespace: ns.Name, Name: "bench",
				UID: "np-" + ns.Name, ResourceVersion: strconv.Itoa(rv), Body: map[string]any{"spec": map[string]any{"podSelector": map[string]any{}}}}
			del = cs.inv.objs[keyOf(&o)] != nil
		case 2:
			crb := byKind["ClusterRoleBinding"][rng.IntN(len(byKind["ClusterRoleBinding"]))]
			o = next(crb, "subjects.0.name", fmt.Sprintf("app-%d", rng.IntN(3)))
		case 3:
			r := byKind["Role"][rng.IntN(len(byKind["Role"]))]
			o = next(r, "rules.0.verbs", []any{"get", "create"})
		case 4:
			p := byKind["Pod"][rng.IntN(len(byKind["Pod"]))]
			o = p
			rv++
			o.ResourceVersion = strconv.Itoa(rv)
		case 5:
			ns := byKind["Namespace"][rng.IntN(len(byKind["Namespace"]))]
			o = next(ns, "metadata.labels.team", strconv.Itoa(i))
		}
		start, c0 := time.Now(), threadCPU()
		if del {
			e.Delete("bench", o.Kind, o.Namespace, o.Name)
		} else if _, err := e.Apply("bench", o); err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		lat, cpu = append(lat, d), append(cpu, threadCPU()-c0)
		byType[i%6] = append(byType[i%6], d)
	}
	b.StopTimer()
	q := func(ds []time.Duration, p float64) time.Duration {
		slices.Sort(ds)
		return ds[min(len(ds)-1, int(p*float64(len(ds))))]
	}
	p50, p99, maxLat, cpu99 := q(lat, 0.5), q(lat, 0.99), lat[len(lat)-1], q(cpu, 0.99)
	b.ReportMetric(float64(p99.Microseconds())/1000, "ms-p99")
	b.ReportMetric(float64(p50.Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(cpu99.Microseconds())/1000, "ms-p99-thread-cpu")
	b.ReportMetric(float64(base.Microseconds())/1000, "ms-one-object-all-checks(baseline)")
	b.Logf("%d changes: p50 %v, p99 %v, max %v; p99 of the changing thread's CPU time %v (baseline, one Deployment judged by all its checks: %v)",
		len(lat), p50, p99, maxLat, cpu99, base)
	for i, name := range []string{"Deployment hostPID", "NetworkPolicy create/delete", "ClusterRoleBinding subject", "Role verbs", "owned Pod resourceVersion", "Namespace label"} {
		if len(byType[i]) > 0 {
			b.Logf("  %-28s p50 %v p99 %v", name, q(byType[i], 0.5), q(byType[i], 0.99))
		}
	}
}
