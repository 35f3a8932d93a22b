// Package kafkaopts turns the kafka section of the configuration (brokers,
// client id, TLS, SASL) into kafka-go client options, so that every room that
// talks to Kafka — the collector's publisher, the processor's readers —
// connects the same way.
//
// Secrets: the SASL password is handed to the mechanism and never appears in
// an error returned from here (errors name the field, not its value).
package kafkaopts

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/tlsfiles"
)

// DialTimeout bounds connection set-up, TLS handshake and SASL exchange
// included. Short enough that an unreachable broker is noticed quickly (the
// publisher spools meanwhile), long enough for a TLS+SCRAM handshake over a
// slow link.
const DialTimeout = 5 * time.Second

// TLSConfig returns the client TLS configuration, or nil when TLS is off.
func TLSConfig(c config.TLSConfig) (*tls.Config, error) {
	if !c.Enabled {
		return nil, nil
	}
	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Only for test grounds with self-signed brokers; config validation
		// lets it through on purpose and the operator sees it in the file.
		InsecureSkipVerify: c.InsecureSkipVerify,
	}
	if c.CAFile != "" {
		pool, err := tlsfiles.CertPool(c.CAFile, "kafka.tls.ca_file")
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			// LoadX509KeyPair's errors name files and parse problems, never
			// key material.
			return nil, fmt.Errorf("kafka.tls.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// SASLMechanism returns the SASL mechanism, or nil when SASL is off.
func SASLMechanism(c config.SASLConfig) (sasl.Mechanism, error) {
	switch c.Mechanism {
	case "":
		return nil, nil
	case "plain":
		return plain.Mechanism{Username: c.Username, Password: string(c.Password)}, nil
	case "scram-sha-256", "scram-sha-512":
		algo := scram.SHA256
		if c.Mechanism == "scram-sha-512" {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, c.Username, string(c.Password))
		if err != nil {
			// The only failure is SASLprep rejecting the user name or the
			// password; say which without echoing either.
			return nil, fmt.Errorf("kafka.sasl: %s: username or password is not valid for SASLprep: %w", c.Mechanism, errNoDetail)
		}
		return m, nil
	}
	return nil, fmt.Errorf("kafka.sasl.mechanism: %q is not one of plain, scram-sha-256, scram-sha-512", c.Mechanism)
}

// errNoDetail stands in for an error whose text might quote a secret.
var errNoDetail = errors.New("details withheld (may contain the secret)")

// Transport returns the kafka-go transport (used by kafka.Writer and
// kafka.Client) for c.
func Transport(c config.KafkaConfig) (*kafka.Transport, error) {
	tc, err := TLSConfig(c.TLS)
	if err != nil {
		return nil, err
	}
	mech, err := SASLMechanism(c.SASL)
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{
		Dial:        (&net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		DialTimeout: DialTimeout,
		ClientID:    c.ClientID,
		TLS:         tc,
		SASL:        mech,
	}, nil
}

// Dialer returns the kafka-go dialer (used by kafka.Reader and kafka.Conn)
// for c.
func Dialer(c config.KafkaConfig) (*kafka.Dialer, error) {
	tc, err := TLSConfig(c.TLS)
	if err != nil {
		return nil, err
	}
	mech, err := SASLMechanism(c.SASL)
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{
		ClientID:      c.ClientID,
		Timeout:       DialTimeout,
		DualStack:     true,
		KeepAlive:     30 * time.Second,
		TLS:           tc,
		SASLMechanism: mech,
	}, nil
}
