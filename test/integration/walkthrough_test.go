package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubesift/kubesift/internal/testenv"
)

// walkthroughDoc is the document whose walkthrough TestWalkthrough runs.
const walkthroughDoc = "docs/deployment.md"

// docBlocks returns the fenced code blocks of the document that follow a
// `<!-- walkthrough:NAME -->` marker, by NAME.
func docBlocks(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	marker := regexp.MustCompile(`^<!-- walkthrough:([a-z-]+) -->$`)
	out := map[string]string{}
	var name string
	var body *strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case body != nil && strings.HasPrefix(line, "```"):
			out[name], body, name = body.String(), nil, ""
		case body != nil:
			body.WriteString(line + "\n")
		case marker.MatchString(line):
			name = marker.FindStringSubmatch(line)[1]
		case name != "" && strings.HasPrefix(line, "```"):
			body = &strings.Builder{}
		case name != "" && strings.TrimSpace(line) != "":
			t.Fatalf("%s: marker walkthrough:%s is not followed by a code block", path, name)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// docCommand is one `kubesift ...` line of a shell block: its environment
// assignments and its arguments (a trailing & dropped).
type docCommand struct {
	env  map[string]string
	args []string
}

func docCommands(t *testing.T, block string) []docCommand {
	t.Helper()
	var out []docCommand
	for _, line := range strings.Split(block, "\n") {
		line = strings.TrimSuffix(strings.TrimSpace(line), "&")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c := docCommand{env: map[string]string{}}
		f := strings.Fields(line)
		for len(f) > 0 && strings.Contains(f[0], "=") {
			k, v, _ := strings.Cut(f[0], "=")
			c.env[k] = v
			f = f[1:]
		}
		if len(f) == 0 || f[0] != "kubesift" {
			t.Fatalf("not a kubesift command: %q", line)
		}
		c.args = f[1:]
		out = append(out, c)
	}
	return out
}

// yamlPath returns the map holding the last key of path (dotted), creating
// the maps on the way when create is set.
func yamlPath(t *testing.T, m map[string]any, path string, create bool) (map[string]any, string) {
	t.Helper()
	keys := strings.Split(path, ".")
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			if !create {
				t.Fatalf("the walkthrough's configuration has no %s", path)
			}
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	return m, keys[len(keys)-1]
}

// replaceKey sets a key the document's configuration has (an address or a
// path of the reader's machine).
func replaceKey(t *testing.T, m map[string]any, path string, v any) {
	t.Helper()
	parent, k := yamlPath(t, m, path, false)
	if _, ok := parent[k]; !ok {
		t.Fatalf("the walkthrough's configuration has no %s", path)
	}
	parent[k] = v
}

// addKey sets a key the document leaves to its default (a name this test
// must not share with the other tests of the ground).
func addKey(t *testing.T, m map[string]any, path string, v any) {
	t.Helper()
	parent, k := yamlPath(t, m, path, true)
	parent[k] = v
}

// TestWalkthrough runs the walkthrough of docs/deployment.md ("Three
// processes on one host against your own Kafka and Elasticsearch") from the
// document's own blocks: the configuration, `kubesift setup all`, the three
// processes (the real binary) with the document's environment, and the
// privileged pod, created through the ground's kube-apiserver, whose alert
// must reach a webhook receiver of the test. It changes only what differs
// on the test ground: addresses (Kafka, Elasticsearch, the kube-apiserver's
// kubeconfig, the audit webhook address the ground's kube-apiserver posts
// to, the metrics ports, the alert webhook URL), paths (the webhook's
// certificates, the spool), and the names of topics, streams, indices and
// consumer groups, which must be the test's own. The ground's kube-apiserver
// already has its audit webhook configured, so the document's webhook
// kubeconfig is checked, not installed: it must point at the port the
// collector listens on.
func TestWalkthrough(t *testing.T) {
	testenv.Short(t)
	brokers := testenv.KafkaBrokers(t) // the shared lock first, then the webhook lock
	esURL := testenv.ElasticsearchURL(t)
	k := testenv.KubeAPIServer(t)
	kubeconfig := testenv.Need(t, "kube", "KUBESIFT_KUBECONFIG_ADMIN")[0]
	blocks := docBlocks(t, filepath.Join(testenv.Root(), walkthroughDoc))
	for _, b := range []string{"config", "setup", "start", "audit-webhook", "pod"} {
		if blocks[b] == "" {
			t.Fatalf("%s: no walkthrough:%s block", walkthroughDoc, b)
		}
	}

	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(blocks["config"]), &cfg); err != nil {
		t.Fatalf("the walkthrough's configuration: %v", err)
	}
	checkWebhookKubeconfig(t, blocks["audit-webhook"], cfg)

	run := fmt.Sprintf("wt%d", time.Now().UnixNano())
	dir := t.TempDir()
	topics := colTopics{audit: "it-" + run + ".audit", events: "it-" + run + ".events", objects: "it-" + run + ".objects",
		alerts: "it-" + run + ".alerts", dlq: "it-" + run + ".dlq"}
	streams := []string{"logs-kubesift.audit-" + run, "logs-kubesift.events-" + run, "logs-kubesift.posture-" + run}
	indices := []string{"kubesift-alerts-" + run, "kubesift-silences-" + run}
	ilmPolicy := "kubesift-" + run
	t.Cleanup(func() {
		deleteTopics(brokers[0], topics.all()...)
		testenv.DeleteES(esURL, streams, indices, func(s string) string { return "kubesift-" + s }, ilmPolicy)
	})
	replaceKey(t, cfg, "kafka.brokers", brokers)
	replaceKey(t, cfg, "sink.elasticsearch.addresses", []string{esURL})
	replaceKey(t, cfg, "collector.kubeconfig", kubeconfig)
	replaceKey(t, cfg, "collector.audit_webhook.listen", k.WebhookAddr)
	replaceKey(t, cfg, "collector.audit_webhook.tls_cert_file", k.WebhookCert)
	replaceKey(t, cfg, "collector.audit_webhook.tls_key_file", k.WebhookKey)
	replaceKey(t, cfg, "collector.audit_webhook.client_ca_file", k.WebhookClientCA)
	replaceKey(t, cfg, "publish.spool.dir", filepath.Join(dir, "spool"))
	hookURLFile := filepath.Join(dir, "alert-webhook-url")
	replaceWebhookURLFile(t, cfg, hookURLFile)
	addKey(t, cfg, "kafka.topics", map[string]any{"audit": topics.audit, "events": topics.events, "objects": topics.objects,
		"alerts": topics.alerts, "dlq": topics.dlq})
	addKey(t, cfg, "sink.elasticsearch.streams", map[string]any{"audit": streams[0], "events": streams[1], "posture": streams[2]})
	addKey(t, cfg, "sink.elasticsearch.alerts_index", indices[0])
	addKey(t, cfg, "sink.elasticsearch.ilm.policy", ilmPolicy)
	addKey(t, cfg, "notify.silences.index", indices[1])
	addKey(t, cfg, "processor.group_id", "it-"+run+"-processor")
	addKey(t, cfg, "notify.consumer_group", "it-"+run+"-notify")
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "kubesift.yaml")
	writeFile(t, cfgPath, string(out))
	withConfig := func(args []string) []string {
		out := append([]string(nil), args...)
		for i := range out {
			if out[i] == "-c" && i+1 < len(out) {
				out[i+1] = cfgPath
			}
		}
		return out
	}

	// The receiver of the alerts, standing in for the document's URL.
	alerts := &alertInbox{}
	hook := httptest.NewServer(alerts)
	defer hook.Close()
	writeFile(t, hookURLFile, hook.URL+"\n")

	// 2. kubesift setup all
	for _, c := range docCommands(t, blocks["setup"]) {
		cmd := exec.Command(testenv.Kubesift(t), withConfig(c.args)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubesift %s: %v\n%s", strings.Join(c.args, " "), err, out)
		}
		for _, want := range []string{"elasticsearch: set up", "kafka: topic " + topics.objects + " (objects): created", "kibana: skipped"} {
			if !bytes.Contains(out, []byte(want)) {
				t.Errorf("kubesift %s: no %q in\n%s", strings.Join(c.args, " "), want, out)
			}
		}
	}

	// 3. The three processes.
	testenv.LockWebhook(t)
	var procs []*testenv.Proc
	var ready []string // each process's metrics address
	for _, c := range docCommands(t, blocks["start"]) {
		var env []string
		if c.env["KUBESIFT_SERVER_LISTEN"] == "" {
			t.Fatalf("kubesift %s: no KUBESIFT_SERVER_LISTEN: the three processes would share one metrics port", strings.Join(c.args, " "))
		}
		for key := range c.env {
			switch key {
			case "KUBESIFT_SERVER_LISTEN":
				addr := testenv.FreeAddr(t)
				ready = append(ready, addr)
				env = append(env, key+"="+addr)
			default:
				t.Fatalf("the walkthrough sets %s, which this test does not know how to give a value on the ground", key)
			}
		}
		procs = append(procs, testenv.Start(t, c.args[0], env, withConfig(c.args)...))
	}
	if len(procs) != 3 {
		t.Fatalf("%d processes in the walkthrough, want 3 (collect, process, notify)", len(procs))
	}
	for i, addr := range ready {
		p := procs[i]
		testenv.WaitForNil(t, p.Name+" ready", 2*time.Minute, func() error {
			if p.Exited() {
				t.Fatalf("%s exited:\n%s", p.Name, testenv.Tail(p.LogPath, 30))
			}
			res, err := http.Get("http://" + addr + "/readyz")
			if err != nil {
				return err
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusOK {
				return fmt.Errorf("/readyz %d: %s", res.StatusCode, b)
			}
			return nil
		})
	}
	if log, _ := os.ReadFile(procs[0].LogPath); !regexp.MustCompile(`leader election Lease.* namespace=default`).Match(log) {
		t.Errorf("the collector does not say that its Lease is in namespace default:\n%s", testenv.Tail(procs[0].LogPath, 30))
	}

	// 5. The privileged pod, through the API server.
	var pod corev1.Pod
	if err := k8syaml.NewYAMLOrJSONDecoder(strings.NewReader(blocks["pod"]), 4096).Decode(&pod); err != nil {
		t.Fatalf("the walkthrough's pod: %v", err)
	}
	cs := testenv.NewKubeClient(t, "kubesift-walkthrough-test").CS
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pods := cs.CoreV1().Pods(pod.Namespace)
	deletePod := func() {
		if err := pods.Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete pod %s/%s: %v", pod.Namespace, pod.Name, err)
		}
	}
	deletePod() // left by an earlier run: the alert is for a create
	t.Cleanup(deletePod)
	testenv.WaitForNil(t, "the pod created", time.Minute, func() error {
		_, err := pods.Create(ctx, &pod, metav1.CreateOptions{})
		return err // AlreadyExists while the earlier one is going away
	})
	want := pod.Namespace + "/" + pod.Name
	testenv.WaitForNil(t, "the privileged-container alert at the webhook", 3*time.Minute, func() error {
		if alerts.has("privileged-container", want) {
			return nil
		}
		return fmt.Errorf("%d alerts received, none of privileged-container naming %s", alerts.count(), want)
	})
	for _, p := range procs {
		if err := p.Stop(time.Minute); err != nil {
			t.Errorf("%s: SIGTERM: %v", p.Name, err)
		}
	}
}

// replaceWebhookURLFile points the first webhook receiver of the document's
// configuration at file.
func replaceWebhookURLFile(t *testing.T, cfg map[string]any, file string) {
	t.Helper()
	parent, key := yamlPath(t, cfg, "notify.receivers", false)
	receivers, _ := parent[key].([]any)
	for _, r := range receivers {
		rm, _ := r.(map[string]any)
		hooks, _ := rm["webhook_configs"].([]any)
		if len(hooks) == 0 {
			continue
		}
		if h, _ := hooks[0].(map[string]any); h != nil && h["url_file"] != nil {
			h["url_file"] = file
			return
		}
	}
	t.Fatal("the walkthrough's configuration has no webhook receiver with url_file")
}

// checkWebhookKubeconfig checks that the document's audit webhook
// kubeconfig sends to the port of collector.audit_webhook.listen in the
// document's configuration, over HTTPS, with a client certificate.
func checkWebhookKubeconfig(t *testing.T, block string, cfg map[string]any) {
	t.Helper()
	var kc struct {
		Clusters []struct {
			Cluster struct {
				Server string `yaml:"server"`
			} `yaml:"cluster"`
		} `yaml:"clusters"`
		Users []struct {
			User map[string]string `yaml:"user"`
		} `yaml:"users"`
	}
	if _, err := clientcmd.Load([]byte(block)); err != nil {
		t.Fatalf("the walkthrough's webhook kubeconfig is not a kubeconfig: %v", err)
	}
	if err := yaml.Unmarshal([]byte(block), &kc); err != nil {
		t.Fatalf("the walkthrough's webhook kubeconfig: %v", err)
	}
	parent, key := yamlPath(t, cfg, "collector.audit_webhook.listen", false)
	listen, _ := parent[key].(string)
	_, port, err := net.SplitHostPort(listen)
	if err != nil || len(kc.Clusters) != 1 || len(kc.Users) != 1 {
		t.Fatalf("webhook kubeconfig %+v, collector.audit_webhook.listen %q", kc, listen)
	}
	u, err := url.Parse(kc.Clusters[0].Cluster.Server)
	if err != nil || u.Scheme != "https" || u.Port() != port {
		t.Errorf("the webhook kubeconfig posts to %q, the collector listens on %q", kc.Clusters[0].Cluster.Server, listen)
	}
	if kc.Users[0].User["client-certificate"] == "" || parent["client_ca_file"] == nil {
		t.Errorf("the webhook kubeconfig presents no client certificate, or the collector checks none")
	}
}

// alertInbox is the webhook receiver of the walkthrough's alerts
// (kubesift/v1 payloads).
type alertInbox struct {
	mu     sync.Mutex
	alerts []inboxAlert
}

type inboxAlert struct {
	RuleID  string `json:"rule_id"`
	Message string `json:"message"`
}

func (a *alertInbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var p struct {
		Alerts []inboxAlert `json:"alerts"`
	}
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	a.alerts = append(a.alerts, p.Alerts...)
	a.mu.Unlock()
}

func (a *alertInbox) has(rule, object string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, al := range a.alerts {
		if al.RuleID == rule && strings.Contains(al.Message, object) {
			return true
		}
	}
	return false
}

func (a *alertInbox) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.alerts)
}
