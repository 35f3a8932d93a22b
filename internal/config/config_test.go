package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "kafka:\n  brokerz: [a:1]\n", `line 2: kafka.brokerz: unknown key (did you mean "brokers"?)`},
		{"bad url", "sink:\n  elasticsearch:\n    addresses: [\"http://ok:9200\", \"::nope\"]\n", "sink.elasticsearch.addresses[1]: not a URL"},
		{"bad broker", "kafka:\n  brokers: [localhost]\n", "kafka.brokers[0]: not host:port"},
		{"bad level", "log:\n  level: loud\n", `log.level: "loud" is not one of debug, info, warn, error`},
		{"bad type", "server:\n  listen: [1]\n", "line 2: server.listen: expected a string, got a list"},
		{"sasl without password", "kafka:\n  sasl:\n    mechanism: plain\n    username: u\n", "kafka.sasl: username and password"},
		{"bad mechanism", "kafka:\n  sasl:\n    mechanism: kerberos\n", `kafka.sasl.mechanism: "kerberos" is not one of`},
		{"two es auths", "sink:\n  elasticsearch:\n    api_key: k\n    username: u\n    password: p\n", "use one of"},
		{"empty topic", "kafka:\n  topics:\n    dlq: \"\"\n", "kafka.topics.dlq: must not be empty"},
		{"bad duration", "sink:\n  elasticsearch:\n    flush_interval: soon\n", `line 3: sink.elasticsearch.flush_interval: expected a duration (like 30s, 5m or 1h30m), got "soon"`},
		{"negative lag interval", "kafka:\n  lag_interval: -1s\n", "kafka.lag_interval: must not be negative"},
		{"missing secret file", "sink:\n  elasticsearch:\n    password_file: /nonexistent/pw\n", "sink.elasticsearch.password_file: open /nonexistent/pw"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "k.yaml", func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "k.yaml: ") {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}
}

func TestDefaultsAndOverrides(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("from-file\n"), 0o600)
	c, err := Parse([]byte("kafka:\n  brokers: [\"k:9092\"]\nsink:\n  elasticsearch:\n    username: u\n    password_file: "+pw+"\n"), "c.yaml",
		func(k string) string {
			if k == EnvKafkaPassword {
				return "from-env"
			}
			return ""
		})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, got, want string }{
		{"default topic kept when section given", c.Kafka.Topics.Audit, "kubesift.audit"},
		{"default log level", c.Log.Level, "info"},
		{"password file read", string(c.Sink.Elasticsearch.Password), "from-file"},
		{"env override", string(c.Kafka.SASL.Password), "from-env"},
		{"default flush interval", c.Sink.Elasticsearch.FlushInterval.String(), time.Second.String()},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %q want %q", tc.name, tc.got, tc.want)
		}
	}
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "from-file") || !strings.Contains(string(out), "<secret>") {
		t.Errorf("secret leaked or not masked:\n%s", out)
	}
}

func TestEmptyFileGivesDefaults(t *testing.T) {
	c, err := Parse(nil, "empty.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	if c.Server.Listen != d.Server.Listen || c.Kafka.Topics != d.Kafka.Topics {
		t.Errorf("got %+v", c)
	}
}

func TestPrintedDefaultsParseBack(t *testing.T) {
	d := Default()
	out, err := Marshal(&d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(out, "defaults", nil); err != nil {
		t.Fatalf("printed defaults do not validate: %v\n%s", err, out)
	}
}

// TestServerFields: server.max_connections, the /metrics bearer token (its
// file and environment override, never printed) and the TLS pair.
func TestServerFields(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("metrics-token\n"), 0o600)
	for _, tc := range []struct {
		name, yaml, env, want, token string
	}{
		{"token file", "server:\n  max_connections: 8\n  bearer_token_file: " + tok + "\n", "", "", "metrics-token"},
		{"env overrides", "server:\n  bearer_token_file: " + tok + "\n", "from-env", "", "from-env"},
		{"negative cap", "server:\n  max_connections: -1\n", "", "server.max_connections: must not be negative", ""},
		{"cert without key", "server:\n  tls_cert_file: /c.pem\n", "", "server.tls_cert_file: tls_cert_file and tls_key_file go together", ""},
		{"missing token file", "server:\n  bearer_token_file: /nonexistent/t\n", "", "server.bearer_token_file: open /nonexistent/t", ""},
		{"negative silence API cap", "notify:\n  silences:\n    api:\n      max_connections: -2\n", "", "notify.silences.api.max_connections: must not be negative", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), "s.yaml", func(k string) string {
				if k == EnvMetricsBearer {
					return tc.env
				}
				return ""
			})
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(c.Server.BearerToken) != tc.token {
				t.Errorf("token %q, want %q", c.Server.BearerToken, tc.token)
			}
			if out, _ := Marshal(c); strings.Contains(string(out), tc.token) {
				t.Errorf("token printed:\n%s", out)
			}
		})
	}
}
