package kafkaopts

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
)

// produce writes one message through a Writer using Transport(k).
func produce(t *testing.T, k config.KafkaConfig) error {
	t.Helper()
	tr, err := Transport(k)
	if err != nil {
		return err
	}
	w := &kafka.Writer{Addr: kafka.TCP(k.Brokers...), Topic: "t", Transport: tr, RequiredAcks: kafka.RequireAll,
		MaxAttempts: 1, BatchTimeout: time.Millisecond}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: []byte("v")})
}

func TestSASLMechanisms(t *testing.T) {
	tests := []struct {
		mechanism, kfakeName string
	}{
		{"plain", "PLAIN"},
		{"scram-sha-256", "SCRAM-SHA-256"},
		{"scram-sha-512", "SCRAM-SHA-512"},
	}
	for _, tc := range tests {
		t.Run(tc.mechanism, func(t *testing.T) {
			const secret = "s3cr3t-Pa55"
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"), kfake.EnableSASL(),
				kfake.Superuser(tc.kfakeName, "kubesift", secret))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			k := config.Default().Kafka
			k.Brokers = c.ListenAddrs()
			k.SASL = config.SASLConfig{Mechanism: tc.mechanism, Username: "kubesift", Password: secret}
			if err := produce(t, k); err != nil {
				t.Fatalf("with the right password: %v", err)
			}
			k.SASL.Password = "wrong-" + secret
			err = produce(t, k)
			if err == nil {
				t.Fatal("a wrong password was accepted")
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

func TestSASLOptionErrors(t *testing.T) {
	if m, err := SASLMechanism(config.SASLConfig{}); m != nil || err != nil {
		t.Errorf("no mechanism: %v %v", m, err)
	}
	_, err := SASLMechanism(config.SASLConfig{Mechanism: "gssapi", Password: "pw-xyz"})
	if err == nil || !strings.Contains(err.Error(), "kafka.sasl.mechanism") || strings.Contains(err.Error(), "pw-xyz") {
		t.Errorf("unknown mechanism: %v", err)
	}
	// SASLprep refuses control characters; the error must not echo them.
	_, err = SASLMechanism(config.SASLConfig{Mechanism: "scram-sha-256", Username: "u", Password: "bad\u0007pw-xyz"})
	if err == nil || strings.Contains(err.Error(), "pw-xyz") {
		t.Errorf("SASLprep failure: %v", err)
	}
}

// selfSigned writes a CA and a server certificate for 127.0.0.1 and returns
// the CA file and the server TLS config.
func selfSigned(t *testing.T) (caFile string, server *tls.Config) {
	t.Helper()
	certFile, keyFile, _ := testenv.SelfSigned(t, t.TempDir())
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

func TestTLS(t *testing.T) {
	caFile, server := selfSigned(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"), kfake.TLS(server))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	k := config.Default().Kafka
	k.Brokers = c.ListenAddrs()
	k.TLS = config.TLSConfig{Enabled: true, CAFile: caFile}
	if err := produce(t, k); err != nil {
		t.Fatalf("TLS with the right CA: %v", err)
	}
	k.TLS.CAFile = ""
	if err := produce(t, k); err == nil {
		t.Fatal("a self-signed broker was trusted without its CA")
	}
}

func TestTLSOptionErrors(t *testing.T) {
	if tc, err := TLSConfig(config.TLSConfig{CAFile: "/nonexistent"}); tc != nil || err != nil {
		t.Errorf("disabled TLS: %v %v", tc, err)
	}
	junk := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(junk, []byte("not pem"), 0o600)
	tests := []struct {
		name string
		c    config.TLSConfig
		want string
	}{
		{"missing CA", config.TLSConfig{Enabled: true, CAFile: "/nonexistent/ca.pem"}, "kafka.tls.ca_file"},
		{"CA without PEM", config.TLSConfig{Enabled: true, CAFile: junk}, "holds no PEM certificate"},
		{"bad key pair", config.TLSConfig{Enabled: true, CertFile: junk, KeyFile: junk}, "kafka.tls.cert_file/key_file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := TLSConfig(tc.c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if _, err := Transport(config.KafkaConfig{TLS: tc.c}); err == nil {
				t.Error("Transport accepted it")
			}
			if _, err := Dialer(config.KafkaConfig{TLS: tc.c}); err == nil {
				t.Error("Dialer accepted it")
			}
		})
	}
}

func TestDialerReadsWithSASL(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", "reader", "pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	k := config.Default().Kafka
	k.Brokers = c.ListenAddrs()
	k.SASL = config.SASLConfig{Mechanism: "scram-sha-512", Username: "reader", Password: "pw"}
	if err := produce(t, k); err != nil {
		t.Fatal(err)
	}
	d, err := Dialer(k)
	if err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: k.Brokers, Topic: "t", Partition: 0, Dialer: d, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := r.ReadMessage(ctx)
	if err != nil || string(m.Value) != "v" {
		t.Fatalf("read %q: %v", m.Value, err)
	}
}
