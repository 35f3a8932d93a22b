package testenv

import (
	"os"
	"strings"
	"testing"
)

// KafkaBrokers returns the test broker addresses. It holds the test
// ground's shared lock for the rest of the test, so a fault test (which takes
// the lock exclusively, see FaultLock) never stops the broker under it. A
// fault test must therefore not call KafkaBrokers; it uses Need directly.
func KafkaBrokers(t testing.TB) []string {
	t.Helper()
	brokers := strings.Split(Need(t, "kafka", "KUBESIFT_KAFKA_BROKERS")[0], ",")
	SharedLock(t)
	return brokers
}

// ElasticsearchURL returns the test Elasticsearch URL. Like KafkaBrokers it
// holds the test ground's shared lock for the rest of the test, so a fault
// test that stops Elasticsearch (under FaultLock) never does so under it; a
// fault test uses Need directly.
func ElasticsearchURL(t testing.TB) string {
	t.Helper()
	url := Need(t, "es", "KUBESIFT_ES_URL")[0]
	SharedLock(t)
	return url
}

// Kube describes the test kube-apiserver and its audit outputs.
type Kube struct {
	URL        string // https://127.0.0.1:port
	CAFile     string // CA of the serving certificate
	AdminToken string // static token of kubesift-admin (system:masters)
	UserToken  string // static token of kubesift-user (no RBAC grants)
	AuditLog   string // --audit-log-path
	Policy     string // the audit Policy file
	// The audit webhook backend posts to WebhookAddr over TLS and presents a
	// client certificate signed by WebhookClientCA; a test receiver serves
	// WebhookCert/WebhookKey there.
	WebhookAddr, WebhookCert, WebhookKey, WebhookClientCA string
}

// KubeAPIServer returns the test ground's kube-apiserver.
func KubeAPIServer(t testing.TB) Kube {
	t.Helper()
	v := Need(t, "kube", "KUBESIFT_KUBE_URL", "KUBESIFT_KUBE_CA", "KUBESIFT_KUBE_ADMIN_TOKEN_FILE",
		"KUBESIFT_KUBE_USER_TOKEN_FILE", "KUBESIFT_AUDIT_LOG", "KUBESIFT_AUDIT_POLICY",
		"KUBESIFT_AUDIT_WEBHOOK_ADDR", "KUBESIFT_AUDIT_WEBHOOK_CERT", "KUBESIFT_AUDIT_WEBHOOK_KEY",
		"KUBESIFT_AUDIT_WEBHOOK_CLIENT_CA")
	read := func(f string) string {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("test ground: %v", err)
		}
		return strings.TrimSpace(string(b))
	}
	return Kube{
		URL: v[0], CAFile: v[1], AdminToken: read(v[2]), UserToken: read(v[3]),
		AuditLog: v[4], Policy: v[5], WebhookAddr: v[6], WebhookCert: v[7], WebhookKey: v[8], WebhookClientCA: v[9],
	}
}
