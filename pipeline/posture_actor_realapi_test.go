package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubesift/kubesift/collector/audittail"
	"github.com/kubesift/kubesift/collector/publish"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
)

// startAuditTail follows the real kube-apiserver's audit log from its
// current end into the test's audit topic, as records of the test's
// cluster, until the test ends.
func (g *postureGround) startAuditTail(t *testing.T, auditLog string) {
	t.Helper()
	cfg := config.Default()
	p := cfg.Publish
	p.Spool.Dir = t.TempDir()
	p.BatchTimeout = 5 * time.Millisecond
	reg := prometheus.NewRegistry()
	pub, err := publish.New(publish.Options{Kafka: g.kafka, Publish: p, Logger: testLogger(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	cc := cfg.Collector
	san, err := redact.New(cc.Redaction, cc.Size, cc.DeadLetterMaxBytes, reg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	tc := cc.AuditTail
	tc.Paths, tc.PositionsFile, tc.StartAt = []string{auditLog}, filepath.Join(t.TempDir(), "positions.yaml"), "end"
	tc.PollInterval, tc.BatchWait = 20*time.Millisecond, 10*time.Millisecond
	tl, err := audittail.New(audittail.Options{Config: tc, Publisher: pub.For(audittail.Source), Sanitizer: san,
		Cluster: record.Cluster{Name: g.cluster}, DeadLetterMaxBytes: cc.DeadLetterMaxBytes, Registerer: reg, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runUntilStopped(t, "audit tail", tl.Run, func() bool { return true }, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := pub.Close(ctx); err != nil {
			t.Errorf("audit publisher close: %v", err)
		}
	})
}

// startProcessorWithPosture runs the record processor on the audit topic
// and, beside it, the posture consumer NewProcessor builds: the actor
// lookups search the audit data stream the processor writes.
func (g *postureGround) startProcessorWithPosture(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	cfg := config.Default()
	cfg.Kafka = g.kafka
	cfg.Sink.Elasticsearch = g.es
	cfg.Processor = testProcessorConfig("records-" + g.cluster)
	cfg.Processor.Topics = []string{g.kafka.Topics.Audit}
	cfg.Processor.Posture = config.ProcessorPostureConfig{Enabled: true, GroupID: "posture-" + g.cluster, AlertSeverity: "high",
		ScoreInterval: time.Second, ActorWait: 30 * time.Second}
	b, err := NewProcessor(context.Background(), &cfg, ProcessorDeps{Registerer: reg, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last first: the posture consumer stops (and drains into
	// the shared writer) before the processor closes it.
	runUntilStopped(t, "record processor", b.Run, func() bool { return b.Processor.Ready() == nil }, nil)
	runUntilStopped(t, "posture consumer", b.Posture.Run, func() bool { return b.Posture.Ready() == nil }, nil)
}

// findingActor is the stored state and actor of a finding.
func (g *postureGround) findingActor(check, uid string) (string, *posture.Actor) {
	status, doc := g.do(http.MethodGet, "/"+g.es.Findings.Index+"/_doc/"+url.PathEscape(g.cluster+"/"+check+"/"+uid), "")
	if status != http.StatusOK {
		return "", nil
	}
	b, _ := json.Marshal(doc["_source"])
	var src struct {
		Kubesift struct {
			Finding struct {
				State string         `json:"state"`
				Actor *posture.Actor `json:"actor"`
			} `json:"finding"`
		} `json:"kubesift"`
	}
	_ = json.Unmarshal(b, &src)
	return src.Kubesift.Finding.State, src.Kubesift.Finding.Actor
}

// TestPostureActorOnRealGround (takes the shared lock of the test ground;
// reads the kube-apiserver's audit log): a privileged Deployment created
// by the ground's static-token user kubesift-user, with a user agent of
// the test's own, opens a finding whose state document in Elasticsearch
// and whose alert name that user, user agent and the audit ID of the
// create; the actor's audit_index and audit_doc_id open that audit
// record's document.
func TestPostureActorOnRealGround(t *testing.T) {
	g := newPostureGround(t)
	k := testenv.KubeAPIServer(t)
	testenv.CreateTopics(t, g.kafka.Brokers[0], 1, g.kafka.Topics.Audit)
	ctx := context.Background()
	const privCheck, nsCheck = "posture-privileged-container", "posture-namespace-without-network-policy"

	g.startAuditTail(t, k.AuditLog)
	reg := prometheus.NewRegistry()
	g.startProcessorWithPosture(t, reg)
	g.startCollector(t)

	nsName := "kubesift-actor-" + randHex()
	ns, err := g.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.kube.CoreV1().Namespaces().Delete(context.Background(), nsName, metav1.DeleteOptions{}) })
	// The warm-up (every object of the shared API server judged) ends
	// when the test's namespace finding opens.
	testenv.WaitFor(t, "namespace finding opens", 90*time.Second, func() bool {
		s, _ := g.findingActor(nsCheck, string(ns.UID))
		return s == "open"
	})

	const user = "kubesift-user"
	if _, err := g.kube.RbacV1().Roles(nsName).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "deployer"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"create", "get"}}}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.kube.RbacV1().RoleBindings(nsName).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "deployer"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "deployer"},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: user}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	agent := "kubesift-actor-test/" + randHex()
	as, err := kubernetes.NewForConfig(&rest.Config{Host: k.URL, BearerToken: k.UserToken, UserAgent: agent,
		TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile}, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var depUID string
	testenv.WaitForNil(t, "kubesift-user creates the privileged Deployment (RBAC caches the binding)", 30*time.Second, func() error {
		d, err := as.AppsV1().Deployments(nsName).Create(ctx, privilegedDeployment(nsName, true), metav1.CreateOptions{})
		if err == nil {
			depUID = string(d.UID)
		}
		return err
	})

	var actor *posture.Actor
	testenv.WaitFor(t, "the privileged finding opens with its actor", 90*time.Second, func() bool {
		var s string
		s, actor = g.findingActor(privCheck, depUID)
		return s == "open" && actor != nil
	})
	t.Logf("actor: %+v", actor)
	if actor.User != user || actor.Verb != "create" || actor.UserAgent != agent || actor.AuditID == "" || actor.PreExisting {
		t.Fatalf("actor %+v, want user %s, agent %s and an audit id", actor, user, agent)
	}
	status, doc := g.do(http.MethodGet, "/"+url.PathEscape(actor.AuditIndex)+"/_doc/"+url.PathEscape(actor.AuditDocID), "")
	audit, _ := doc["_source"].(map[string]any)["kubernetes"].(map[string]any)["audit"].(map[string]any)
	if status != http.StatusOK || audit["auditID"] != actor.AuditID || audit["verb"] != "create" {
		t.Errorf("audit document %s/%s: %d %v", actor.AuditIndex, actor.AuditDocID, status, audit)
	}
	if got := testenv.Metric(t, reg, "kubesift_posture_actor_lookups_total", "result", "found"); got < 1 {
		t.Errorf("actor_lookups_total{result=found} = %v", got)
	}

	testenv.WaitForNil(t, "the alert names the actor", 30*time.Second, func() error {
		for _, m := range testenv.ReadTopic(t, g.kafka.Brokers[0], g.kafka.Topics.Alerts) {
			var a rules.Alert
			if json.Unmarshal(m.Value, &a) != nil || !strings.HasPrefix(a.ID, g.cluster+"/"+privCheck+"/"+depUID+"/") {
				continue
			}
			if a.User != user || a.Verb != "create" || a.UserAgent != agent || a.AuditID != actor.AuditID {
				return fmt.Errorf("alert names user %q, verb %q, agent %q, audit %q", a.User, a.Verb, a.UserAgent, a.AuditID)
			}
			return nil
		}
		return errors.New("no alert of the finding yet")
	})
}
