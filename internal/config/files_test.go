package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kubesift/kubesift/internal/testenv"
)

// TestEveryFileFieldIsClassified walks every struct reachable from Config:
// a key that names a file or directory must be in fileFields, so that
// CheckFiles (config validate) checks it, and every entry of fileFields must
// still exist.
func TestEveryFileFieldIsClassified(t *testing.T) {
	looksLikeFile := func(key string) bool {
		for _, s := range []string{"_file", "_dir", "_path", "_paths", "kubeconfig"} {
			if strings.HasSuffix(key, s) {
				return true
			}
		}
		return key == "dir" || key == "dirs" || key == "path" || key == "paths" || key == "file" || key == "files"
	}
	used := map[string]bool{}
	seen := map[reflect.Type]bool{}
	var walk func(typ reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] {
			return
		}
		seen[typ] = true
		for key, f := range yamlFields(typ) {
			p := joinPath(path, key)
			if _, ok := fileFields[key]; ok {
				used[key] = true
			} else if looksLikeFile(key) {
				t.Errorf("%s names a file but %q is not in fileFields (files.go): say how config validate checks it", p, key)
			}
			walk(f.Type, p)
		}
	}
	walk(reflect.TypeFor[Config](), "")
	for key := range fileFields {
		if !used[key] {
			t.Errorf("fileFields lists %q, which no configuration struct has", key)
		}
	}
}

// TestCheckFiles: every file the configuration names exists and parses as
// its kind says, and each problem names the field and the file.
func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	ca := testenv.NewKeyPair(t, testenv.CertSpec{CN: "ca", IsCA: true})
	caFile, _ := ca.Write(t, dir, "ca")
	leaf := testenv.NewKeyPair(t, testenv.CertSpec{CN: "leaf", Parent: ca})
	certFile, keyFile := leaf.Write(t, dir, "leaf")
	_, otherKey := testenv.NewKeyPair(t, testenv.CertSpec{CN: "other"}).Write(t, dir, "other")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret := write("secret", "s3cr3t-value\n")
	empty := write("empty", " \n")
	notPEM := write("not-pem", "s3cr3t-value")
	kubeconfig := write("kubeconfig", "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: https://k:6443}\n")
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name string
		set  func(c *Config)
		want string // "" = no problem
	}{
		{"all good", func(c *Config) {
			c.Kafka.TLS = TLSConfig{Enabled: true, CAFile: caFile, CertFile: certFile, KeyFile: keyFile}
			c.Sink.Elasticsearch.CAFile = caFile
			c.Sink.Elasticsearch.PasswordFile = secret
			c.Server.TLSCertFile, c.Server.TLSKeyFile = certFile, keyFile
			c.Collector.Kubeconfig = kubeconfig
			c.Collector.AuditWebhook.ClientCAFile = caFile
			c.Notify.Silences.API.TokenFile = secret
		}, ""},
		{"missing CA", func(c *Config) { c.Kafka.TLS.CAFile = missing }, "kafka.tls.ca_file: stat " + missing + ": no such file"},
		{"CA without a certificate", func(c *Config) { c.Sink.Elasticsearch.CAFile = notPEM }, "sink.elasticsearch.ca_file: " + notPEM + " holds no PEM certificate"},
		{"CA is a directory", func(c *Config) { c.Collector.AuditWebhook.ClientCAFile = dir }, "collector.audit_webhook.client_ca_file: " + dir + " is a directory"},
		{"key of another certificate", func(c *Config) {
			c.Server.TLSCertFile, c.Server.TLSKeyFile = certFile, otherKey
		}, "server.tls_cert_file: " + certFile + " and " + otherKey + ": tls: private key does not match public key"},
		{"missing key", func(c *Config) {
			c.Notify.Silences.API.TLSCertFile, c.Notify.Silences.API.TLSKeyFile = certFile, missing
		}, "notify.silences.api.tls_key_file: stat " + missing},
		{"missing secret", func(c *Config) { c.Kafka.SASL.PasswordFile = missing }, "kafka.sasl.password_file: stat " + missing},
		{"empty secret", func(c *Config) { c.Server.BearerTokenFile = empty }, "server.bearer_token_file: " + empty + " is empty"},
		{"receiver secret", func(c *Config) {
			c.Notify.Receivers = []ReceiverConfig{{Name: "r", WebhookConfigs: []WebhookConfig{{URLFile: secret, SecretFile: missing}}}}
		}, "notify.receivers[0].webhook_configs[0].secret_file: stat " + missing},
		{"not a kubeconfig", func(c *Config) { c.Collector.Kubeconfig = secret }, "collector.kubeconfig: " + secret + " is not a kubeconfig"},
		{"state files are not checked", func(c *Config) {
			c.Collector.AuditTail.PositionsFile = missing
			c.Publish.Spool.Dir = missing
			c.Collector.AuditTail.Paths = []string{missing}
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.set(&c)
			err := c.CheckFiles()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("CheckFiles = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("CheckFiles = %v, want it to contain %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "s3cr3t-value") {
				t.Errorf("a file's content is in the error: %v", err)
			}
		})
	}
}

// TestFilesListsRuleDirs: the caller compiles processor.rules.dirs; Files
// hands them over with their paths.
func TestFilesListsRuleDirs(t *testing.T) {
	c := Default()
	c.Processor.Rules.Dirs = []string{"/a", "/b"}
	var got []string
	for _, f := range c.Files() {
		if f.Kind == FileRules {
			got = append(got, f.Field+"="+f.Path)
		}
	}
	if want := []string{"processor.rules.dirs[0]=/a", "processor.rules.dirs[1]=/b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("rule dirs = %v, want %v", got, want)
	}
}
