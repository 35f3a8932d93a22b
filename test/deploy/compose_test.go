package deploy

import (
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
)

// The compose stack cannot run here (no container runtime), so these tests
// check what can go wrong without running it: the file parses, every image
// is pinned, every address a kubesift config names is a service of the file
// on a port that service listens on, every mounted file exists, and the
// configs pass the real strict loader with the environment compose gives.

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       *composeBuild     `yaml:"build"`
	Command     any               `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   map[string]any    `yaml:"depends_on"`
	Healthcheck map[string]any    `yaml:"healthcheck"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

const composeDir = "deployments/compose"

func loadCompose(t testing.TB) composeFile {
	t.Helper()
	var c composeFile
	// yaml.v3 resolves the anchors and merge keys (<<: *kubesift) as
	// compose does.
	if err := yaml.Unmarshal(mustRead(t, composeDir, "compose.yaml"), &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	if len(c.Services) == 0 {
		t.Fatal("compose.yaml: no services")
	}
	return c
}

// interpolate applies compose's ${VAR:-default} with an empty environment.
var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-([^}]*))?\}`)

func interpolate(s string) string {
	return composeVar.ReplaceAllString(s, "$3")
}

func (s composeService) commandArgs() []string {
	switch c := s.Command.(type) {
	case []any:
		out := make([]string, len(c))
		for i, a := range c {
			out[i], _ = a.(string)
		}
		return out
	case string:
		return strings.Fields(c)
	}
	return nil
}

// containerPorts are the ports a service listens on inside its container:
// the container side of its published ports, and the ones its image's
// configuration (environment) names.
func (s composeService) containerPorts() map[string]bool {
	out := map[string]bool{}
	for _, p := range s.Ports {
		p = strings.SplitN(p, "/", 2)[0]
		parts := strings.Split(p, ":")
		out[parts[len(parts)-1]] = true
	}
	return out
}

func TestComposeImagesPinned(t *testing.T) {
	c := loadCompose(t)
	for name, s := range c.Services {
		t.Run(name, func(t *testing.T) {
			img := interpolate(s.Image)
			if img == "" {
				t.Fatal("no image")
			}
			tag := ""
			if i := strings.LastIndexByte(img, ':'); i > strings.LastIndexByte(img, '/') {
				tag = img[i+1:]
			}
			if tag == "" || tag == "latest" {
				t.Errorf("image %q is not pinned to a tag (and never :latest)", img)
			}
			if s.Build != nil {
				if _, err := os.Stat(filepath.Join(repo(composeDir), s.Build.Context, s.Build.Dockerfile)); err != nil {
					t.Errorf("build: %v", err)
				}
			}
			for _, d := range keysOf(mapKeys(s.DependsOn)) {
				if _, ok := c.Services[d]; !ok {
					t.Errorf("depends_on %s: no such service", d)
				}
			}
		})
	}
}

func mapKeys(m map[string]any) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

// TestComposeKubesift checks every kubesift service of the stack: its
// subcommand exists in the real binary, the config it is given (-c) is
// mounted from a file of the compose directory, that config passes
// config.Parse with the service's environment, and the Kafka brokers,
// Elasticsearch addresses and webhook receivers it names are services of
// the file on ports they listen on; and the broker keeps its data on its
// volume.
func TestComposeKubesift(t *testing.T) {
	c := loadCompose(t)
	checkKafkaLogDirs(t, c)
	bin := testenv.Kubesift(t)
	var n int
	for name, s := range c.Services {
		args := s.commandArgs()
		if s.Build == nil && !strings.HasPrefix(interpolate(s.Image), "kubesift/") {
			continue
		}
		n++
		t.Run(name, func(t *testing.T) {
			i := slices.Index(args, "-c")
			if i < 0 || i+1 >= len(args) {
				t.Fatalf("command %v has no -c CONFIG", args)
			}
			// The subcommand is real: --help of it succeeds.
			help := append(append([]string{}, args[:i]...), "--help")
			if out, err := exec.Command(bin, help...).CombinedOutput(); err != nil {
				t.Errorf("kubesift %s: %v\n%s", strings.Join(help, " "), err, out)
			}
			cfgPath := args[i+1]
			var host string
			for _, v := range s.Volumes {
				parts := strings.Split(v, ":")
				if len(parts) >= 2 && parts[1] == cfgPath {
					host = parts[0]
				}
				// Every bind-mounted file or directory exists.
				if strings.HasPrefix(parts[0], ".") {
					if _, err := os.Stat(filepath.Join(repo(composeDir), parts[0])); err != nil {
						t.Errorf("volume %s: %v", v, err)
					}
				} else if _, ok := c.Volumes[parts[0]]; !ok {
					t.Errorf("volume %s: named volume %s is not declared", v, parts[0])
				}
			}
			if host == "" {
				t.Fatalf("%s is not mounted", cfgPath)
			}
			data, err := os.ReadFile(filepath.Join(repo(composeDir), host))
			if err != nil {
				t.Fatal(err)
			}
			env := map[string]string{}
			for k, v := range s.Environment {
				env[k] = interpolate(v)
			}
			cfg, err := config.Parse(data, host, func(k string) string { return env[k] })
			if err != nil {
				t.Fatalf("%v", err)
			}
			// Addresses name services of the file, on their ports.
			for _, b := range cfg.Kafka.Brokers {
				checkAddr(t, c, "kafka.brokers "+b, b)
				kafka := c.Services[strings.Split(b, ":")[0]]
				if adv := kafka.Environment["KAFKA_ADVERTISED_LISTENERS"]; !strings.Contains(adv, "://"+b) {
					t.Errorf("kafka.brokers %s is not an advertised listener of the broker (%s)", b, adv)
				}
			}
			for _, a := range cfg.Sink.Elasticsearch.Addresses {
				u, err := url.Parse(a)
				if err != nil {
					t.Fatal(err)
				}
				checkAddr(t, c, "sink.elasticsearch.addresses "+a, u.Host)
			}
			for _, r := range cfg.Notify.Receivers {
				for _, w := range r.WebhookConfigs {
					if u, err := url.Parse(string(w.URL)); err == nil && u.Host != "" {
						checkAddr(t, c, "notify webhook of receiver "+r.Name, u.Host)
					}
				}
			}
			switch args[0] {
			case "setup":
				if args[1] == "kibana" {
					checkKibanaSetup(t, c, s, args)
				}
			case "collect":
				// The tailed files and the state directory are mounted.
				for _, p := range cfg.Collector.AuditTail.Paths {
					if !mounted(s, p) {
						t.Errorf("collector.audit_tail.paths %s is not mounted into %s", p, name)
					}
				}
				for _, p := range []string{cfg.Collector.AuditTail.PositionsFile, cfg.Publish.Spool.Dir} {
					if !mounted(s, p) {
						t.Errorf("%s is not on a volume of %s (lost on every restart)", p, name)
					}
				}
				// The topics it writes are created by kafka-topics, which
				// runs `kubesift setup kafka` on the same configuration
				// file, so it creates exactly the topics the config names.
				topics := c.Services["kafka-topics"]
				if got := strings.Join(topics.commandArgs(), " "); got != "setup kafka -c "+cfgPath ||
					!slices.Contains(topics.Volumes, host+":"+cfgPath) && !slices.Contains(topics.Volumes, host+":"+cfgPath+":ro") {
					t.Errorf("service kafka-topics runs %q with volumes %v, want kubesift setup kafka on %s's configuration %s", got, topics.Volumes, name, host)
				}
			}
		})
	}
	if n < 3 {
		t.Errorf("%d kubesift services in compose.yaml, want collect, process, notify (and setup)", n)
	}
	// A stack with Kibana imports kubesift's dashboards into it.
	if _, ok := c.Services["kibana"]; ok {
		imports := false
		for _, s := range c.Services {
			args := s.commandArgs()
			imports = imports || (len(args) > 1 && args[0] == "setup" && args[1] == "kibana")
		}
		if !imports {
			t.Error("compose.yaml has Kibana but no service runs `kubesift setup kibana`")
		}
	}
	// Kibana talks to the same Elasticsearch.
	if h := c.Services["kibana"].Environment["ELASTICSEARCH_HOSTS"]; h != "" {
		u, err := url.Parse(strings.Trim(h, `[]"`))
		if err != nil {
			t.Fatal(err)
		}
		checkAddr(t, c, "kibana ELASTICSEARCH_HOSTS", u.Host)
	}
}

// checkKibanaSetup: `setup kibana --url` names a service of the file on a
// port it listens on, and waits for that service's healthcheck (Kibana
// answers 503 to imports while it starts).
func checkKibanaSetup(t *testing.T, c composeFile, s composeService, args []string) {
	t.Helper()
	i := slices.Index(args, "--url")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("setup kibana %v has no --url", args)
	}
	u, err := url.Parse(args[i+1])
	if err != nil {
		t.Fatal(err)
	}
	checkAddr(t, c, "setup kibana --url", u.Host)
	host := u.Hostname()
	dep, _ := s.DependsOn[host].(map[string]any)
	if dep["condition"] != "service_healthy" {
		t.Errorf("setup kibana does not wait for %s to be healthy (depends_on %v)", host, s.DependsOn)
	}
	if c.Services[host].Healthcheck == nil {
		t.Errorf("service %s has no healthcheck for setup kibana to wait on", host)
	}
}

// kafkaDefaultLogDir is where the broker of the apache/kafka image writes
// its data when KAFKA_LOG_DIRS (log.dirs) is not set: Kafka's own default
// log.dir.
const kafkaDefaultLogDir = "/tmp/kafka-logs"

// checkKafkaLogDirs: every data directory of the kafka service
// (KAFKA_LOG_DIRS, comma-separated, else the default) is on one of its
// volumes, so `docker compose down` and `up` keep the topics.
func checkKafkaLogDirs(t *testing.T, c composeFile) {
	t.Helper()
	kafka, ok := c.Services["kafka"]
	if !ok {
		t.Fatal("compose.yaml: no kafka service")
	}
	dirs := kafkaDefaultLogDir
	if v := interpolate(kafka.Environment["KAFKA_LOG_DIRS"]); v != "" {
		dirs = v
	}
	for _, d := range strings.Split(dirs, ",") {
		if d = strings.TrimSpace(d); !mounted(kafka, d) {
			t.Errorf("kafka writes its data to %s (KAFKA_LOG_DIRS %q), which is on none of its volumes %v: the topics are lost with the container",
				d, kafka.Environment["KAFKA_LOG_DIRS"], kafka.Volumes)
		}
	}
}

// kubesiftMention is a kubesift command line in a comment: kubesift, a
// subcommand, then anything.
var kubesiftMention = regexp.MustCompile(`\bkubesift ([a-z][a-z-]*(?: [a-z][a-z-]*)*)((?: +[^ ]+)*)`)

// TestComposeCommentCommands: every kubesift command line the comments of
// the compose files show runs with the real binary's commands and flags:
// the subcommand path exists (its --help succeeds) and each --flag is one
// of its flags.
func TestComposeCommentCommands(t *testing.T) {
	bin := testenv.Kubesift(t)
	help := func(args ...string) string {
		out, err := exec.Command(bin, append(args, "--help")...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubesift %s --help: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// subcommands lists the commands of a --help page.
	subcommands := func(page string) map[string]bool {
		out := map[string]bool{}
		_, after, ok := strings.Cut(page, "Available Commands:")
		if !ok {
			return out
		}
		for _, line := range strings.Split(after, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				if len(out) > 0 {
					break
				}
				continue
			}
			out[f[0]] = true
		}
		return out
	}
	root := subcommands(help())
	checked := 0
	for _, file := range []string{"compose.yaml", "kubesift.yaml"} {
		for i, line := range strings.Split(string(mustRead(t, composeDir, file)), "\n") {
			_, comment, ok := strings.Cut(line, "#")
			if !ok {
				continue
			}
			for _, m := range kubesiftMention.FindAllStringSubmatch(comment, -1) {
				words := strings.Fields(m[1])
				if len(words) == 0 || !root[words[0]] {
					continue // prose ("kubesift service"), not a command
				}
				path := []string{words[0]}
				page := help(path...)
				for _, w := range words[1:] {
					if !subcommands(page)[w] {
						break
					}
					path = append(path, w)
					page = help(path...)
				}
				checked++
				for _, arg := range strings.Fields(m[2]) {
					if !strings.HasPrefix(arg, "--") {
						continue
					}
					flag, _, _ := strings.Cut(arg, "=")
					if !regexp.MustCompile(`(^|[ ,])` + regexp.QuoteMeta(flag) + `[ =\n]`).MatchString(page) {
						t.Errorf("%s:%d: `kubesift %s` has no flag %s (comment: %s)", file, i+1, strings.Join(path, " "), flag, strings.TrimSpace(comment))
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Error("no kubesift command found in the compose files' comments")
	}
}

// checkAddr: host:port names a service of the file that listens on port.
func checkAddr(t testing.TB, c composeFile, what, hostport string) {
	t.Helper()
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	s, ok := c.Services[host]
	if !ok {
		t.Errorf("%s: no service %q in compose.yaml", what, host)
		return
	}
	listens := s.containerPorts()
	for k, v := range s.Environment {
		// Ports the service's own configuration names (KAFKA_LISTENERS,
		// HTTP_PORT).
		if strings.Contains(k, "LISTENERS") || strings.HasSuffix(k, "_PORT") {
			for _, m := range regexp.MustCompile(`(?:^|:)(\d+)(?:,|$)`).FindAllStringSubmatch(v, -1) {
				listens[m[1]] = true
			}
		}
	}
	if !listens[port] {
		t.Errorf("%s: service %s does not listen on port %s (ports: %v)", what, host, port, keysOf(listens))
	}
}

// mounted: path is at or under a volume target of s.
func mounted(s composeService, path string) bool {
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			continue
		}
		if tgt := parts[1]; path == tgt || strings.HasPrefix(path, strings.TrimSuffix(tgt, "/")+"/") {
			return true
		}
	}
	return false
}
