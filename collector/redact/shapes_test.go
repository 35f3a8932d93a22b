package redact

import (
	"fmt"
	"strings"
	"testing"
)

// Planted values of the shapes the generic rules cover; like allPlants, none
// of them (nor their base64) may appear in a redacted record.
const (
	plantEnvPassword = "plant-env-password-a1c3"
	plantEnvDBURL    = "plant-env-dburl-55e0"
	plantEnvDSN      = "plant-env-dsn-0b7d"
	plantProbeAuth   = "plant-probe-auth-6d21"
	plantHookCookie  = "plant-hook-cookie-9e4f"
	plantSnippet     = "plant-ingress-snippet-3f88"
	plantAWSSecret   = "plant-aws-secret-c0de"
	plantDotEnv      = "plant-dotenv-b33f"
	plantYAMLToken   = "plant-yaml-token-7a7a"
	plantAWSKeyID    = "AKIAPLANTKEYID7Q2WXY"
	plantPEM         = "plant-pem-body-e2e2"
	plantJWTPayload  = "eyJwbGFudCI6Imp3dC00ZDRkIn0" // {"plant":"jwt-4d4d"}
	plantURIJWT      = "plant-uri-jwt-1f1f"
	plantURIAmzSig   = "plant-uri-amzsig-2e2e"
	plantAnnURL      = "plant-annotation-url-8c8c"
)

var shapePlants = []string{plantEnvPassword, plantEnvDBURL, plantEnvDSN, plantProbeAuth, plantHookCookie, plantSnippet,
	plantAWSSecret, plantDotEnv, plantYAMLToken, plantAWSKeyID, plantPEM, plantJWTPayload, plantURIJWT, plantURIAmzSig, plantAnnURL}

func init() { allPlants = append(allPlants, shapePlants...) }

var (
	// podSpecWithCreds has every container-level shape: credential env,
	// connection strings, probe and lifecycle headers.
	podSpecWithCreds = fmt.Sprintf(`{"containers":[{"name":"app","image":"app:1","env":[`+
		`{"name":"DB_PASSWORD","value":%q},{"name":"DATABASE_URL","value":"postgres://app:%s@db:5432/app?sslmode=require"},`+
		`{"name":"MYSQL_DSN","value":"app:%s@tcp(db:3306)/app"},{"name":"KEYCLOAK_URL","value":%q},`+
		`{"name":"API_TOKEN","valueFrom":{"secretKeyRef":{"name":"s","key":"token"}}},{"name":"LOG_LEVEL","value":"debug"}],`+
		`"livenessProbe":{"httpGet":{"path":"/healthz","port":8080,"httpHeaders":[{"name":"Authorization","value":"Bearer %s"},{"name":"X-Trace","value":%q}]}},`+
		`"lifecycle":{"preStop":{"httpGet":{"path":"/stop","port":8080,"httpHeaders":[{"name":"Cookie","value":"sid=%s"}]}}}}]}`,
		plantEnvPassword, plantEnvDBURL, plantEnvDSN, keepValue, plantProbeAuth, keepValue, plantHookCookie)
	podWithCreds        = `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"ns1"},"spec":` + podSpecWithCreds + `}`
	deploymentWithCreds = `{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"d","namespace":"ns1","annotations":{"kubectl.kubernetes.io/last-applied-configuration":` +
		quoteJSON(`{"kind":"Deployment","spec":{"template":{"spec":`+podSpecWithCreds+`}}}`) + `}},"spec":{"template":{"metadata":{"labels":{"app":"d"}},"spec":` + podSpecWithCreds + `}}}`
	podList     = `{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[` + podWithCreds + `]}`
	ingressObj  = `{"kind":"Ingress","apiVersion":"networking.k8s.io/v1","metadata":{"name":"i","annotations":{"nginx.ingress.kubernetes.io/configuration-snippet":"proxy_set_header Authorization \"Basic ` + plantSnippet + `\";","nginx.ingress.kubernetes.io/server-snippet":"set $k ` + plantSnippet + `;","nginx.ingress.kubernetes.io/auth-url":"https://user:` + plantAnnURL + `@auth.example/check","team":"` + keepValue + `"}},"spec":{}}`
	credsINI    = "[default]\naws_access_key_id = " + plantAWSKeyID + "\naws_secret_access_key = " + plantAWSSecret + "\nregion = eu-west-1\n"
	credsDotEnv = "LOG_LEVEL=" + keepValue + "\nDB_PASSWORD=" + plantDotEnv + "\nexport STRIPE_API_KEY=\"" + plantDotEnv + "\"\n"
	credsYAML   = "server:\n  port: 8080\n  token: " + plantYAMLToken + "\n  jwt: eyJhbGciOiJIUzI1NiJ9." + plantJWTPayload + ".c2ln\n"
	credsPEM    = "-----BEGIN RSA PRIVATE KEY-----\n" + plantPEM + "\n-----END RSA PRIVATE KEY-----\n"
	cmFiles     = fmt.Sprintf(`{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"files"},"data":{"config":%q,".env":%q,"app.yaml":%q,"tls.txt":%q,"nginx.conf":%q},"binaryData":{"creds.bin":%q}}`,
		credsINI, credsDotEnv, credsYAML, credsPEM, "worker_processes "+keepValue+";", b64(credsINI))
)

func quoteJSON(s string) string { return fmt.Sprintf("%q", s) }

// genericShapeCases are TestRedaction's cases of the rules for objects of
// every kind.
var genericShapeCases = []redactionCase{
	{"pod env, probe and hook headers", auditLine("create", "/api/v1/namespaces/ns1/pods", "pods", "", podWithCreds, podWithCreds),
		[]string{KindEnvValue, KindHTTPHeader}, []string{`"DB_PASSWORD"`, `"Authorization"`, `"Cookie"`, keepValue, `"secretKeyRef"`, `"debug"`, "postgres://app:" + Marker + "@db:5432", "app:" + Marker + "@tcp("}, false},
	{"pod list response", auditLine("list", "/api/v1/pods", "pods", "", "", podList),
		[]string{KindEnvValue, KindHTTPHeader}, []string{keepValue}, false},
	{"deployment template and last-applied", auditLine("update", "/apis/apps/v1/namespaces/ns1/deployments/d", "deployments", "", deploymentWithCreds, deploymentWithCreds),
		[]string{KindEnvValue, KindHTTPHeader}, []string{keepValue, "last-applied-configuration"}, false},
	{"strategic merge patch of env", auditLine("patch", "/apis/apps/v1/namespaces/ns1/deployments/d", "deployments", "",
		`{"spec":{"template":{"spec":{"containers":[{"name":"app","env":[{"name":"DB_PASSWORD","value":"`+plantEnvPassword+`"}]}]}}}}`, ""),
		[]string{KindEnvValue}, []string{"DB_PASSWORD"}, false},
	{"JSON patch adding a container", auditLine("patch", "/api/v1/namespaces/ns1/pods/p", "pods", "",
		`[{"op":"add","path":"/spec/containers/1","value":{"name":"x","env":[{"name":"DB_PASSWORD","value":"`+plantEnvPassword+`"}]}}]`, ""),
		[]string{KindEnvValue}, []string{"DB_PASSWORD"}, false},
	{"ingress snippet annotations", auditLine("create", "/apis/networking.k8s.io/v1/namespaces/ns1/ingresses", "ingresses", "", ingressObj, ingressObj),
		[]string{KindAnnotationSnippet, KindURLCredential}, []string{keepValue, "configuration-snippet", "https://user:" + Marker + "@auth.example/check"}, false},
	{"configmap credential files", auditLine("create", "/api/v1/namespaces/ns1/configmaps", "configmaps", "", cmFiles, cmFiles),
		[]string{KindConfigMapContent}, []string{"aws_access_key_id = " + Marker, "region = eu-west-1", "LOG_LEVEL=" + keepValue, "port: 8080", "worker_processes " + keepValue, `"tls.txt":"` + Marker}, false},
	{"jwt and AWS signature in the URI", auditLine("get", "/api/v1/namespaces/ns1/pods/p/log?jwt="+plantURIJWT+"&follow=true&X-Amz-Signature="+plantURIAmzSig+"&x-amz-credential="+plantURIAmzSig, "pods", "log", "", ""),
		[]string{KindURIQuery}, []string{"follow=true", "jwt=" + Marker, "X-Amz-Signature=" + Marker}, false},
}

func TestIsCredentialName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"DB_PASSWORD", true}, {"dbPassword", true}, {"MYSQL_ROOT_PASSWD", true}, {"CLIENT_SECRET", true},
		{"GITHUB_TOKEN", true}, {"AWS_SECRET_ACCESS_KEY", true}, {"AWS_ACCESS_KEY_ID", true}, {"SSH_KEY", true},
		{"ENCRYPTION_KEY", true}, {"stripeApiKey", true}, {"X_API_KEY", true}, {"GOOGLE_APPLICATION_CREDENTIALS", true},
		{"BASIC_AUTH", true}, {"PRIVATE_PEM", true}, {"Authorization", true}, {"Proxy_Authorization", true}, {"Cookie", true},
		{"KEYCLOAK_URL", false}, {"MONKEY_COUNT", false}, {"KEYSPACE", false}, {"LOG_LEVEL", false}, {"DATABASE_URL", false},
		{"PATH", false}, {"X_Trace", false}, {"", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := isCredentialName(tc.name); got != tc.want {
				t.Errorf("isCredentialName(%q) = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
}

func TestMaskText(t *testing.T) {
	s := newSanitizer(t, nil)
	tests := []struct {
		name, in string
		keep     []string
	}{
		{"INI", credsINI, []string{"[default]", "aws_secret_access_key = " + Marker, "region = eu-west-1"}},
		{".env", credsDotEnv, []string{"DB_PASSWORD=" + Marker, "LOG_LEVEL=" + keepValue}},
		{"YAML", credsYAML, []string{"token: " + Marker, "port: 8080"}},
		{"PEM", "x\n" + credsPEM, []string{"x\n" + Marker}},
		{"JSON", `{"user":"` + keepValue + `","password":"` + plantDotEnv + `"}`, []string{`"password":"` + Marker + `"`, keepValue}},
		{"escaped JSON", `{\"password\":\"` + plantDotEnv + `\"}`, []string{`\"password\":\"` + Marker}},
		{"command line", "--db-password=" + plantDotEnv + " --v=2", []string{"--v=2"}},
		{"bearer", "Authorization: Bearer " + plantProbeAuth, []string{"Authorization: " + Marker}},
		{"bare bearer", "got Bearer " + plantProbeAuth + " back", []string{"Bearer " + Marker + " back"}},
		{"url userinfo", "redis://default:" + plantEnvDBURL + "@redis:6379/0", []string{"@redis:6379/0"}},
		{"query in text", "GET /x?foo=1&sig=" + plantURIAmzSig + " 200", []string{"foo=1", " 200"}},
		{"AWS key id alone", "id " + plantAWSKeyID + " used", []string{"id " + Marker + " used"}},
		{"nothing to mask", "worker_processes 4; keepalive 65", []string{"worker_processes 4; keepalive 65"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _ := s.maskText(tc.in)
			if l := leaks(out); len(l) > 0 {
				t.Errorf("leaked %v: %q", l, out)
			}
			for _, k := range tc.keep {
				if !strings.Contains(out, k) {
					t.Errorf("lost %q: %q", k, out)
				}
			}
		})
	}
}
