package integration

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/kubesift/kubesift/collector/publish"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// TestSecretCorpusEndToEnd (takes the webhook lock) plants a unique marker
// in every shape the collector must redact — the ones already covered
// (Secret data, a ConfigMap credential key, ?token=) and the generic ones
// (credential env values and connection strings in a Pod and a Deployment
// template, probe and lifecycle Authorization/Cookie headers, ingress
// snippet annotations, an AWS credentials INI and a .env file in a
// ConfigMap, an AWS key id, ?jwt= and X-Amz-Signature in request URIs, a
// password= in an Event message) — into the real kube-apiserver, and sends
// dead letters carrying markers through each source: a Pod body and an
// unknown kind's body with a bad field and unparsable JSON (webhook POSTs and
// lines of a tailed file), and an Event too large for the publisher (the
// Events path). The real `kubesift collect` publishes to the real Kafka,
// `kubesift process` indexes into the real Elasticsearch, and `kubesift run`
// replays the API server's own audit lines, the bad lines and the Events
// into NDJSON. No marker, plain or base64, may be in any topic (the
// dead-letter topic included), any index, any NDJSON file (dead-letters.ndjson
// included) or any line the processes logged.
func TestSecretCorpusEndToEnd(t *testing.T) {
	testenv.Short(t)
	brokers := testenv.KafkaBrokers(t) // shared lock first, then the webhook lock (the order of the other tests)
	k := testenv.KubeAPIServer(t)
	esURL := testenv.ElasticsearchURL(t)
	testenv.LockWebhook(t)
	kubeconfig := testenv.Need(t, "kube", "KUBESIFT_KUBECONFIG_ADMIN")[0]

	pe := newProcEnv(t, "secrets", brokers, esURL, 1)
	topics := colTopics{audit: pe.topic, events: pe.topic + "-events", objects: pe.topic + "-objects", alerts: pe.alerts, dlq: pe.dlq}
	t.Cleanup(func() { deleteTopics(brokers[0], topics.events, topics.objects) })
	tailPath := filepath.Join(t.TempDir(), "bad-audit.log")
	if err := os.WriteFile(tailPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// The Events collector watches the redaction namespace only, without
	// leader election or watermark (one collector, a fresh start). A small
	// publish batch makes a large Event a record the publisher refuses, so
	// it becomes a dead letter; audit records are cut below it by the size
	// policy.
	e := newCollectEnv(t, "secrets", brokers, k, colOpts{
		webhookListen: k.WebhookAddr, tailPaths: []string{k.AuditLog, tailPath}, kubeconfig: kubeconfig, topics: &topics,
		collectorExtra: fmt.Sprintf("  size: {max_record_bytes: 60000}\n  events:\n    enabled: true\n    namespaces: [%q]\n"+
			"    leader_election: {enabled: false}\n    watermark: {enabled: false}\n", colRedactionNS),
		publishExtra: "  batch_bytes: 65536\n",
	})
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	ua := "kubesift-secrets-e2e/" + run
	p := &plants{}
	logw := watchAuditLog(t, k.AuditLog)
	col := e.start("collect")
	proc, _ := startSecretsProcessor(t, pe, topics)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cs := colKubeClient(t, k, k.AdminToken, ua)
	colSetupRedactionNS(ctx, t, cs)
	corpus := plantCorpus(ctx, t, cs, p, run)
	bad := badDeadLetterInputs(p, run)
	postBadToWebhook(t, k, bad)
	appendLines(t, tailPath, bad)
	t.Logf("%d markers planted", p.count())

	// Wait until every audit record of the test's requests is on the audit
	// topic from both paths, the Events are on theirs, and the dead
	// letters of every source are on the dead-letter topic.
	var want []string
	testenv.WaitFor(t, "the test's audit records from both paths", 3*time.Minute, func() bool {
		want = sortedIDs(logw.records(t, ua))
		pc := indexAudit(t, testenv.ReadTopic(t, e.broker, topics.audit))
		return len(want) > 0 && len(pc.missing("audit-webhook", want)) == 0 && len(pc.missing("audit-tail", want)) == 0
	})
	// The Event too large for publish.batch_bytes is dead-lettered by the
	// publisher in the record's place: source "publish", the record's own
	// source in its kubesift-source header.
	wantDL := map[string]int{"audit-webhook": len(bad), "audit-tail": len(bad), "publish/" + string(record.SourceEvent): 1}
	testenv.WaitFor(t, "dead letters of every source", 3*time.Minute, func() bool {
		got := map[string]int{}
		for _, m := range testenv.ReadTopic(t, e.broker, topics.dlq) {
			src := colHeader(m, publish.HeaderDLQSource)
			if src == "publish" {
				src += "/" + colHeader(m, record.HeaderSource)
			}
			got[src]++
		}
		for src, n := range wantDL {
			if got[src] < n {
				return false
			}
		}
		return true
	})
	testenv.WaitFor(t, "the test's Events on the events topic", 2*time.Minute, func() bool {
		for _, m := range testenv.ReadTopic(t, e.broker, topics.events) {
			if strings.Contains(string(m.Value), corpus.smallEvent) {
				return true
			}
		}
		return false
	})
	testenv.WaitFor(t, "the processor at the end of both topics", 3*time.Minute, func() bool {
		return groupAtEnd(t, brokers[0], pe.group, topics.audit, topics.events)
	})
	if err := col.Stop(time.Minute); err != nil {
		t.Errorf("collect: SIGTERM: %v", err)
	}
	if err := proc.Stop(time.Minute); err != nil {
		t.Errorf("process: SIGTERM: %v", err)
	}

	// kubesift run: the API server's audit lines of these requests (with
	// every marker as it wrote them), the bad lines and the Events.
	in := t.TempDir()
	writeFile(t, filepath.Join(in, "1-audit.log"), strings.Join(rawAuditLines(t, k.AuditLog, logw.start, ua), "\n")+"\n")
	writeFile(t, filepath.Join(in, "2-bad.log"), strings.Join(bad, "\n")+"\n")
	writeFile(t, filepath.Join(in, "3-events.json"), corpus.eventsDump)
	out := filepath.Join(t.TempDir(), "out")
	rp := testenv.Start(t, "run", nil, "run", "--out", out, in)
	if err := rp.Wait(5 * time.Minute); err != nil {
		t.Fatalf("kubesift run: %v\n%s", err, testenv.Tail(rp.LogPath, 30))
	}

	// Count every marker found anywhere.
	found := 0
	scanned, inTopics := scanForPlants(t, brokers[0], topics.all(), p)
	found += inTopics
	found += scanES(t, pe, p)
	ndjson := 0
	_ = filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".ndjson") {
			return err
		}
		ndjson++
		found += scanFile(t, path, p)
		return nil
	})
	if _, err := os.Stat(filepath.Join(out, "dead-letters.ndjson")); err != nil {
		t.Errorf("kubesift run wrote no dead-letters.ndjson: %v", err)
	}
	for _, lp := range []string{col.LogPath, proc.LogPath, rp.LogPath} {
		found += scanFile(t, lp, p)
	}
	t.Logf("%d markers planted; %d messages on %d topics (%d audit records of the test's requests), %d NDJSON files, 3 process logs scanned; markers found: %d",
		p.count(), scanned, len(topics.all()), len(want), ndjson, found)
}

// corpusResult is what the scan needs of the planted objects.
type corpusResult struct {
	smallEvent string // the name of the Event that must reach the events topic
	eventsDump string // the test's Events as `kubectl get events -o json` prints them
}

// plantCorpus creates the objects and makes the requests that carry a marker
// in each shape.
func plantCorpus(ctx context.Context, t *testing.T, cs *kubernetes.Clientset, p *plants, run string) corpusResult {
	t.Helper()
	ns := colRedactionNS
	ok := func(what string, err error) {
		t.Helper()
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// The ground runs no controller manager: the Pod's ServiceAccount must
	// be made by hand.
	_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	ok("service account", err)

	akia := "AKIA" + strings.ToUpper(fmt.Sprintf("%016s", strconv.FormatInt(time.Now().UnixNano(), 36)))[:16]
	p.addRaw(akia)
	p.addRaw(base64.StdEncoding.EncodeToString([]byte(akia)))

	_, err = cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "corpus-" + run},
		StringData: map[string]string{"password": p.add(run + "-secret")}}, metav1.CreateOptions{})
	ok("secret", err)
	_, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "corpus-" + run},
		Data: map[string]string{
			"db_password": p.add(run + "-cmkey"),
			"config":      "[default]\naws_access_key_id = " + akia + "\naws_secret_access_key = " + p.add(run+"-ini") + "\nregion = eu-west-1\n",
			".env":        "LOG_LEVEL=debug\nDB_PASSWORD=" + p.add(run+"-dotenv") + "\n",
		}}, metav1.CreateOptions{})
	ok("configmap", err)

	spec := func(tag string) corev1.PodSpec {
		no := false
		return corev1.PodSpec{AutomountServiceAccountToken: &no, Containers: []corev1.Container{{
			Name: "app", Image: "registry.invalid/app:1",
			Env: []corev1.EnvVar{
				{Name: "DB_PASSWORD", Value: p.add(run + "-" + tag + "-env")},
				{Name: "DATABASE_URL", Value: "postgres://app:" + p.add(run+"-"+tag+"-dburl") + "@db:5432/app"},
				{Name: "LOG_LEVEL", Value: "debug"},
			},
			LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/healthz", Port: intstr.FromInt32(8080),
				HTTPHeaders: []corev1.HTTPHeader{{Name: "Authorization", Value: "Bearer " + p.add(run+"-"+tag+"-probe")}},
			}}},
			Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/stop", Port: intstr.FromInt32(8080),
				HTTPHeaders: []corev1.HTTPHeader{{Name: "Cookie", Value: "sid=" + p.add(run+"-"+tag+"-cookie")}},
			}}},
		}}}
	}
	_, err = cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "corpus-" + run}, Spec: spec("pod")}, metav1.CreateOptions{})
	ok("pod", err)
	one := int32(0)
	labels := map[string]string{"app": "corpus-" + run}
	_, err = cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "corpus-" + run},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec("deploy")}}}, metav1.CreateOptions{})
	ok("deployment", err)
	_, err = cs.NetworkingV1().Ingresses(ns).Create(ctx, &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "corpus-" + run,
		Annotations: map[string]string{
			"nginx.ingress.kubernetes.io/configuration-snippet": `proxy_set_header Authorization "Basic ` + p.add(run+"-snippet") + `";`,
			"nginx.ingress.kubernetes.io/auth-snippet":          "set $token " + p.add(run+"-authsnippet") + ";",
		}},
		Spec: networkingv1.IngressSpec{DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
			Name: "app", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}, metav1.CreateOptions{})
	ok("ingress", err)

	// Credentials in request URIs (the API server ignores parameters it
	// does not know, and audits the URI as sent).
	res := cs.CoreV1().RESTClient().Get().Namespace(ns).Resource("configmaps").
		Param("jwt", p.add(run+"-jwt")).Param("X-Amz-Signature", p.add(run+"-amzsig")).
		Param("X-Amz-Credential", p.add(run+"-amzcred")).Param("token", p.add(run+"-token")).Do(ctx)
	if err := res.Error(); err != nil {
		t.Fatalf("list with credential parameters: %v", err)
	}

	// Events: one that is published (its message redacted), one larger
	// than publish.batch_bytes that the publisher refuses (a dead letter).
	small := "corpus-" + run
	for _, ev := range []struct {
		name, msg string
	}{
		{small, "login failed: password=" + p.add(run+"-eventmsg") + " for user app"},
		{"corpus-big-" + run, "dump: password=" + p.add(run+"-bigevent") + " " + strings.Repeat("x", 100<<10)},
	} {
		_, err = cs.CoreV1().Events(ns).Create(ctx, &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: ev.name},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: ns, Name: "corpus-" + run},
			Reason:         "Failed", Message: ev.msg, Type: "Warning", Count: 1,
			FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(), Source: corev1.EventSource{Component: "kubesift-e2e"},
		}, metav1.CreateOptions{})
		ok("event", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		del := metav1.DeleteOptions{}
		_ = cs.CoreV1().Events(ns).Delete(ctx, small, del)
		_ = cs.CoreV1().Events(ns).Delete(ctx, "corpus-big-"+run, del)
		_ = cs.CoreV1().Pods(ns).Delete(ctx, "corpus-"+run, del)
		_ = cs.AppsV1().Deployments(ns).Delete(ctx, "corpus-"+run, del)
		_ = cs.NetworkingV1().Ingresses(ns).Delete(ctx, "corpus-"+run, del)
		_ = cs.CoreV1().Secrets(ns).Delete(ctx, "corpus-"+run, del)
		_ = cs.CoreV1().ConfigMaps(ns).Delete(ctx, "corpus-"+run, del)
	})
	evs, err := cs.CoreV1().Events(ns).Get(ctx, small, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	evs.APIVersion, evs.Kind = "v1", "Event"
	dump, _ := json.Marshal(map[string]any{"kind": "List", "apiVersion": "v1", "items": []any{evs}})
	return corpusResult{smallEvent: small, eventsDump: string(dump)}
}

// badDeadLetterInputs are audit documents that must become dead letters,
// each with markers: a Pod body and an unknown kind's body with a field of
// the wrong type, and JSON cut off in the middle of a password= value.
func badDeadLetterInputs(p *plants, run string) []string {
	ev := func(id, resource, group, body string) string {
		return `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"` + id + `","stage":"ResponseComplete",` +
			`"requestURI":"/apis/x/v1/namespaces/ns/` + resource + `","verb":"create","user":{"username":5},"sourceIPs":["10.0.0.1"],` +
			`"objectRef":{"resource":"` + resource + `","apiGroup":"` + group + `","namespace":"ns","name":"x"},"responseStatus":{"code":201},` +
			`"requestObject":` + body + `,"requestReceivedTimestamp":"2026-12-01T10:00:00.000000Z","stageTimestamp":"2026-12-01T10:00:00.010000Z"}`
	}
	return []string{
		ev("dl-pod-"+run, "pods", "", `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"x"},"spec":{"containers":[{"name":"c","env":[{"name":"DB_PASSWORD","value":"`+p.add(run+"-dlpod")+`"}]}]}}`),
		ev("dl-widget-"+run, "widgets", "example.com", `{"kind":"Widget","apiVersion":"example.com/v1","metadata":{"name":"x"},"spec":{"adminPassword":"`+p.add(run+"-dlwidget")+`"}}`),
		`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"dl-cut-` + run + `","annotations":{"note":"password=` + p.add(run+"-dlcut") + ` and more`,
	}
}

// postBadToWebhook posts each document to the collector's webhook as
// kube-apiserver would (its client certificate), one EventList each.
func postBadToWebhook(t *testing.T, k testenv.Kube, docs []string) {
	t.Helper()
	hc := webhookClient(t, k)
	for i, d := range docs {
		body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + d + `]}`
		if i == len(docs)-1 {
			body = `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + d // stays unparsable
		}
		res, err := hc.Post("https://"+k.WebhookAddr+"/audit", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("webhook post %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
}

func appendLines(t *testing.T, path string, lines []string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// rawAuditLines returns the lines kube-apiserver wrote after start for
// requests made with user agent ua, as written.
func rawAuditLines(t *testing.T, path string, start int64, ua string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(io.NewSectionReader(f, start, 1<<62))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var out []string
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"userAgent":"`+ua+`"`) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// startSecretsProcessor runs `kubesift process --setup` reading the audit
// and events topics into the procEnv's data streams.
func startSecretsProcessor(t *testing.T, pe *procEnv, tp colTopics) (*testenv.Proc, string) {
	t.Helper()
	addr := testenv.FreeAddr(t)
	var b strings.Builder
	fmt.Fprintf(&b, "log: {level: info, format: json}\nserver: {listen: %q}\n", addr)
	fmt.Fprintf(&b, "kafka:\n  brokers: [%s]\n  client_id: kubesift-it-secrets\n", quoteAll(pe.brokers))
	fmt.Fprintf(&b, "  topics: {audit: %q, events: %q, objects: %q, alerts: %q, dlq: %q}\n", tp.audit, tp.events, tp.objects, tp.alerts, tp.dlq)
	fmt.Fprintf(&b, "processor:\n  group_id: %q\n  topics: [%q, %q]\n  commit_interval: 500ms\n", pe.group, tp.audit, tp.events)
	fmt.Fprintf(&b, "sink:\n  elasticsearch:\n    addresses: [%q]\n", pe.esURL)
	fmt.Fprintf(&b, "    streams: {audit: %q, events: %q, posture: %q}\n", pe.stream, "logs-kubesift.events-"+pe.run, "logs-kubesift.posture-"+pe.run)
	fmt.Fprintf(&b, "    alerts_index: %q\n    flush_interval: 250ms\n", pe.alertsIdx)
	cfg := filepath.Join(pe.dir, "secrets-process.yaml")
	writeFile(t, cfg, b.String())
	p := testenv.Start(t, "process", nil, "process", "-c", cfg, "--setup")
	testenv.WaitFor(t, "process ready", 90*time.Second, func() bool {
		if p.Exited() {
			t.Fatalf("process exited during start-up:\n%s", testenv.Tail(p.LogPath, 30))
		}
		res, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return p, addr
}

// groupAtEnd reports whether group has committed the end of every
// partition of topics.
func groupAtEnd(t *testing.T, broker, group string, topics ...string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, done := colKafkaClient(broker)
	defer done()
	meta, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return false
	}
	reqs := map[string][]kafka.OffsetRequest{}
	parts := map[string][]int{}
	for _, tp := range meta.Topics {
		for _, p := range tp.Partitions {
			reqs[tp.Name] = append(reqs[tp.Name], kafka.LastOffsetOf(p.ID))
			parts[tp.Name] = append(parts[tp.Name], p.ID)
		}
	}
	ends, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: reqs})
	if err != nil {
		return false
	}
	com, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: parts})
	if err != nil {
		return false
	}
	for tp, ps := range ends.Topics {
		committed := map[int]int64{}
		for _, p := range com.Topics[tp] {
			committed[p.Partition] = p.CommittedOffset
		}
		for _, p := range ps {
			if p.LastOffset > 0 && committed[p.Partition] != p.LastOffset {
				return false
			}
		}
	}
	return true
}

func deleteTopics(broker string, topics ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, done := colKafkaClient(broker)
	defer done()
	_, _ = c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
}

// scanES searches every document of the test's data streams and alerts
// index for markers.
func scanES(t *testing.T, pe *procEnv, p *plants) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	idx := strings.Join([]string{pe.stream, "logs-kubesift.events-" + pe.run, "logs-kubesift.posture-" + pe.run, pe.alertsIdx}, ",")
	_, _, _ = pe.es(ctx, http.MethodPost, "/"+idx+"/_refresh?ignore_unavailable=true", nil)
	code, body, err := pe.es(ctx, http.MethodPost, "/"+idx+"/_search?size=10000&ignore_unavailable=true", []byte(`{"query":{"match_all":{}}}`))
	if err != nil || code != http.StatusOK {
		t.Fatalf("search %s: HTTP %d %v: %.300s", idx, code, err, body)
	}
	var res struct {
		Hits struct {
			Hits []struct {
				Index  string          `json:"_index"`
				ID     string          `json:"_id"`
				Source json.RawMessage `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	found := 0
	streams := map[string]int{}
	for _, h := range res.Hits.Hits {
		streams[strings.SplitN(h.Index, "-", 3)[1]]++
		if v := p.find(h.Source); v != "" {
			found++
			t.Errorf("Elasticsearch %s/%s holds a marker: %q", h.Index, h.ID, v)
		}
	}
	if len(res.Hits.Hits) == 0 {
		t.Errorf("no documents in %s", idx)
	}
	t.Logf("Elasticsearch: %d documents scanned (%v)", len(res.Hits.Hits), streams)
	return found
}

// scanFile counts the lines of a file (NDJSON output, a process log) that
// hold a marker.
func scanFile(t *testing.T, path string, p *plants) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	found, lines := 0, 0
	for sc.Scan() {
		lines++
		if v := p.find(sc.Bytes()); v != "" {
			found++
			t.Errorf("%s line %d holds a marker: %q", filepath.Base(path), lines, v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Errorf("%s: %v", path, err)
	}
	return found
}
