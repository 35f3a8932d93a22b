package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubesift/kubesift/internal/testenv"
)

// servingCommand is a subcommand that runs until it is stopped, with the
// configuration fields of the addresses it listens on.
type servingCommand struct {
	path    string   // "collect", "run" (as cobra's CommandPath without "kubesift ")
	variant string   // how it is started, when there are several ways
	listens []string // config fields; each must be in the command's annotationListens
	// args returns the command line for the ground g with the address of
	// each listens field in addrs.
	args func(t *testing.T, g *servingGround, addrs map[string]string) []string
}

// servingCommands is every long-running subcommand, each way it can run.
// TestServingCommandsListed keeps it equal to the command tree's
// annotationListens, so a new long-running command must be added here and
// is then run by TestServingCommandsFailOnTakenAddress.
var servingCommands = []servingCommand{
	{path: "collect", listens: []string{fieldServerListen, fieldWebhookListen}, args: collectArgs},
	{path: "process", listens: []string{fieldServerListen}, args: processArgs},
	{path: "notify", listens: []string{fieldServerListen, fieldSilenceAPIListen}, args: notifyArgs},
	{path: "run", variant: "file", listens: []string{fieldServerListen, fieldWebhookListen}, args: runFileArgs},
	{path: "run", variant: "kubeconfig", listens: []string{fieldServerListen}, args: runKubeconfigArgs},
}

// TestServingCommandsListed walks the command tree: the commands that say
// they listen (annotationListens) are exactly servingCommands', with the
// same fields, and a command whose help promises server.listen says so.
func TestServingCommandsListed(t *testing.T) {
	listed := map[string][]string{}
	for _, c := range servingCommands {
		fs := append(listed[c.path], c.listens...)
		slices.Sort(fs)
		listed[c.path] = slices.Compact(fs)
	}
	seen := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.TrimPrefix(c.CommandPath(), "kubesift ")
		ann, ok := c.Annotations[annotationListens]
		if !ok && strings.Contains(c.Long, "server.listen") {
			t.Errorf("%q serves on server.listen (its help says so) but has no %s annotation", path, annotationListens)
		}
		if ok {
			seen[path] = true
			fs := strings.Split(ann, ",")
			sort.Strings(fs)
			if want, in := listed[path]; !in {
				t.Errorf("%q listens on %v but is not in servingCommands", path, fs)
			} else if !slices.Equal(fs, want) {
				t.Errorf("%q listens on %v; servingCommands tests %v", path, fs, want)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand())
	for path := range listed {
		if !seen[path] {
			t.Errorf("servingCommands lists %q, which the command tree does not annotate", path)
		}
	}
}

// TestServingCommandsFailOnTakenAddress (real Kafka, Elasticsearch and
// kube-apiserver) starts the real binary of every long-running command
// with one of its addresses taken, for each of them: the command must exit
// non-zero within a bound, with an error naming the address, rather than
// run on without its metrics, its webhook or its silence API.
func TestServingCommandsFailOnTakenAddress(t *testing.T) {
	g := newServingGround(t)
	for _, c := range servingCommands {
		for _, taken := range c.listens {
			name := strings.TrimSuffix(c.path+" "+c.variant, " ") + " " + taken
			t.Run(name, func(t *testing.T) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				addrs := map[string]string{}
				for _, f := range c.listens {
					addrs[f] = testenv.FreeAddr(t)
				}
				addrs[taken] = ln.Addr().String()
				p := testenv.Start(t, strings.ReplaceAll(name, " ", "-"), nil, c.args(t, g, addrs)...)
				err = p.Wait(90 * time.Second)
				var ee *exec.ExitError
				if !errors.As(err, &ee) {
					t.Fatalf("%s: %v; want a non-zero exit", name, err)
				}
				log, _ := os.ReadFile(p.LogPath)
				if !strings.Contains(string(log), addrs[taken]) || !strings.Contains(string(log), "kubesift:") {
					t.Fatalf("exit %d; the error does not name %s (%s):\n%s", ee.ExitCode(), addrs[taken], taken, testenv.Tail(p.LogPath, 20))
				}
			})
		}
	}
}

// Configuration fields of the listeners.
const (
	fieldServerListen     = "server.listen"
	fieldWebhookListen    = "collector.audit_webhook.listen"
	fieldSilenceAPIListen = "notify.silences.api.listen"
)

// servingGround is what the commands are started against: the ground's
// servers, and names and files of this test run.
type servingGround struct {
	brokers    []string
	esURL      string
	kubeconfig string
	run        string
	dir        string
	certFile   string
	keyFile    string
}

func newServingGround(t *testing.T) *servingGround {
	t.Helper()
	g := &servingGround{brokers: testenv.KafkaBrokers(t), esURL: testenv.ElasticsearchURL(t),
		run: fmt.Sprint(time.Now().UnixNano()), dir: t.TempDir()}
	g.kubeconfig = testenv.Need(t, "kube", "KUBESIFT_KUBECONFIG_ADMIN")[0]
	g.certFile, g.keyFile, _ = testenv.SelfSigned(t, g.dir)
	// The commands' topics exist before they start, as in a deployment:
	// a lag reading of a missing topic is an error.
	var topics []string
	for _, kind := range []string{"audit", "events", "objects", "alerts", "dlq"} {
		topics = append(topics, "it-serve-"+kind+"-"+g.run)
	}
	testenv.CreateTopics(t, g.brokers[0], 1, topics...)
	// notify creates its silences index on start.
	t.Cleanup(func() {
		testenv.ESDo(g.esURL, "DELETE", "/it-serve-silences-"+g.run+",it-serve-alerts-"+g.run+"?ignore_unavailable=true", "")
	})
	return g
}

// config writes a configuration file of the run and returns its path.
func (g *servingGround) config(t *testing.T, name, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// topics is the kafka section of the run: topics of its own, which no
// other test writes to.
func (g *servingGround) topics() string {
	return fmt.Sprintf("  topics: {audit: it-serve-audit-%[1]s, events: it-serve-events-%[1]s, objects: it-serve-objects-%[1]s, alerts: it-serve-alerts-%[1]s, dlq: it-serve-dlq-%[1]s}\n", g.run)
}

// collectorSources is the collector section of collect and run: the
// audit webhook on webhook and the tail of an empty file.
func (g *servingGround) collectorSources(t *testing.T, webhook string) string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(log, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`collector:
  cluster_uid: it-serve
  audit_webhook: {enabled: true, listen: %q, tls_cert_file: %q, tls_key_file: %q, bearer_token: hook-token}
  audit_tail: {enabled: true, paths: [%q], positions_file: %q}
`, webhook, g.certFile, g.keyFile, log, filepath.Join(dir, "positions.json"))
}

func collectArgs(t *testing.T, g *servingGround, addrs map[string]string) []string {
	yaml := fmt.Sprintf("cluster: {name: it-serve}\nserver: {listen: %q}\nkafka:\n  brokers: [%q]\n%spublish: {spool: {dir: %q}}\n",
		addrs[fieldServerListen], g.brokers[0], g.topics(), filepath.Join(t.TempDir(), "spool")) + g.collectorSources(t, addrs[fieldWebhookListen])
	return []string{"collect", "-c", g.config(t, "collect", yaml)}
}

func processArgs(t *testing.T, g *servingGround, addrs map[string]string) []string {
	yaml := fmt.Sprintf("server: {listen: %q}\nkafka:\n  brokers: [%q]\n%ssink: {elasticsearch: {addresses: [%q]}}\nprocessor: {group_id: it-serve-proc-%s}\n",
		addrs[fieldServerListen], g.brokers[0], g.topics(), g.esURL, g.run)
	return []string{"process", "-c", g.config(t, "process", yaml), "--no-builtin"}
}

func notifyArgs(t *testing.T, g *servingGround, addrs map[string]string) []string {
	yaml := fmt.Sprintf(`server: {listen: %q}
kafka:
  brokers: [%q]
%ssink: {elasticsearch: {addresses: [%q], alerts_index: it-serve-alerts-%s}}
notify:
  consumer_group: it-serve-notify-%s
  route: {receiver: ops}
  receivers:
    - name: ops
      webhook_configs: [{url: "http://127.0.0.1:9/hook"}]
  silences: {index: it-serve-silences-%s, api: {listen: %q, token: api-token}}
`, addrs[fieldServerListen], g.brokers[0], g.topics(), g.esURL, g.run, g.run, g.run, addrs[fieldSilenceAPIListen])
	return []string{"notify", "-c", g.config(t, "notify", yaml)}
}

func runFileArgs(t *testing.T, g *servingGround, addrs map[string]string) []string {
	yaml := fmt.Sprintf("server: {listen: %q}\n", addrs[fieldServerListen]) + g.collectorSources(t, addrs[fieldWebhookListen])
	return []string{"run", "-c", g.config(t, "run-file", yaml), "--out", t.TempDir(), "--no-posture", "--progress", "never", sampleAuditPath}
}

func runKubeconfigArgs(t *testing.T, g *servingGround, addrs map[string]string) []string {
	yaml := fmt.Sprintf("server: {listen: %q}\n", addrs[fieldServerListen])
	return []string{"run", "-c", g.config(t, "run-kubeconfig", yaml), "--out", t.TempDir(), "--no-posture", "--progress", "never",
		"--kubeconfig", g.kubeconfig}
}
