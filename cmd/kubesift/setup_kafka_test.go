package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/testenv"
)

func TestSetupKafkaErrors(t *testing.T) {
	dir := t.TempDir()
	noBrokers := filepath.Join(dir, "nobrokers.yaml")
	os.WriteFile(noBrokers, []byte("cluster: {name: lab}\n"), 0o644)
	badSettings := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badSettings, []byte("kafka:\n  brokers: [\"127.0.0.1:1\"]\n  topic_settings: {replication_factor: 1, min_insync_replicas: 2}\n"), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"output", []string{"-c", noBrokers, "-o", "yaml"}, `"yaml" is not one of text, json`},
		{"no brokers", []string{"-c", noBrokers}, "kafka.brokers: at least one broker is required"},
		{"settings", []string{"-c", badSettings}, "kafka.topic_settings.audit.min_insync_replicas: 2 is more than the replication factor 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, errs, code := runCLI(t, "", append([]string{"setup", "kafka"}, tc.args...)...)
			if code == 0 || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q, want %q", code, errs, tc.want)
			}
		})
	}
}

// TestSetupKafka runs `kubesift setup kafka` against the test ground's Kafka:
// the first run creates the five topics (-o json says so), the second
// changes nothing and says so; a topic made by hand with another retention
// is reported with exit status 1, accepted with --allow-drift, and fixed
// with --apply-drift, after which a run changes nothing.
func TestSetupKafka(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	prefix := fmt.Sprintf("it-cmdsetup-%d", time.Now().UnixNano())
	topics := map[string]string{}
	for _, r := range []string{"audit", "events", "objects", "alerts", "dlq"} {
		topics[r] = prefix + "." + r
	}
	t.Cleanup(func() {
		var names []string
		for _, n := range topics {
			names = append(names, n)
		}
		testenv.DeleteTopics(brokers[0], names...)
	})
	writeConfig := func(name, audit string) string {
		path := filepath.Join(t.TempDir(), name)
		os.WriteFile(path, []byte(fmt.Sprintf(`kafka:
  brokers: [%q]
  topics: {audit: %s, events: %s, objects: %s, alerts: %s, dlq: %s}
  topic_settings: {partitions: 2, replication_factor: 1}
`, brokers[0], audit, topics["events"], topics["objects"], topics["alerts"], topics["dlq"])), 0o644)
		return path
	}
	cfg := writeConfig("kafka.yaml", topics["audit"])

	out, errs, code := runCLI(t, "", "setup", "kafka", "-c", cfg, "-o", "json")
	if code != 0 {
		t.Fatalf("first run: exit %d\n%s\n%s", code, out, errs)
	}
	var rep struct {
		Topics []struct {
			Name, Action string
			Configs      map[string]string
		}
		Changed    bool
		Unresolved int
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if !rep.Changed || len(rep.Topics) != 5 {
		t.Errorf("first run: %+v", rep)
	}
	for _, tp := range rep.Topics {
		if tp.Action != "created" {
			t.Errorf("first run: %s %s", tp.Name, tp.Action)
		}
	}
	testenv.WaitForNil(t, "a second run changing nothing", 30*time.Second, func() error {
		out, errs, code := runCLI(t, "", "setup", "kafka", "-c", cfg)
		if code != 0 || !strings.Contains(out, "kafka: nothing to change: the 5 topics exist with the configured settings") {
			return fmt.Errorf("second run: exit %d\n%s\n%s", code, out, errs)
		}
		return nil
	})

	handMade := prefix + ".hand.audit"
	topics["hand"] = handMade
	testenv.CreateTopicConfigs(t, brokers[0], kafka.TopicConfig{Topic: handMade, NumPartitions: 2,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: "3600000"}}})
	drifted := writeConfig("drifted.yaml", handMade)
	tests := []struct {
		name     string
		flags    []string
		code     int
		stdout   string
		stderrIn string
	}{
		{"reported", nil, 1, "retention.ms is 3600000, configured 604800000: left as it is; --apply-drift changes it", "--allow-drift"},
		{"accepted", []string{"--allow-drift"}, 0, "1 with differences left", ""},
		{"applied", []string{"--apply-drift"}, 0, "retention.ms is 3600000, configured 604800000: changed to 604800000", ""},
	}
	for _, tc := range tests {
		out, errs, code := runCLI(t, "", append([]string{"setup", "kafka", "-c", drifted}, tc.flags...)...)
		if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errs, tc.stderrIn) {
			t.Errorf("%s: exit %d (want %d)\nstdout %s\nstderr %s", tc.name, code, tc.code, out, errs)
		}
	}
	testenv.WaitForNil(t, "no drift left", 30*time.Second, func() error {
		out, errs, code := runCLI(t, "", "setup", "kafka", "-c", drifted)
		if code != 0 || !strings.Contains(out, "nothing to change") {
			return fmt.Errorf("exit %d\n%s\n%s", code, out, errs)
		}
		return nil
	})
}
