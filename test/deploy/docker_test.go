package deploy

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// dockerfile is deployments/Dockerfile split into stages of instructions
// (continuation lines joined, comments dropped).
type dockerStage struct {
	from, name string
	instrs     []string // "RUN ...", "USER ...", ...
}

func parseDockerfile(t testing.TB) []dockerStage {
	t.Helper()
	var (
		stages []dockerStage
		cur    strings.Builder
	)
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		kw, rest, _ := strings.Cut(line, " ")
		kw = strings.ToUpper(kw)
		if kw == "FROM" {
			f := strings.Fields(rest)
			st := dockerStage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			return
		}
		if len(stages) == 0 {
			if kw != "ARG" {
				t.Fatalf("Dockerfile: %s before FROM", kw)
			}
			return
		}
		s := &stages[len(stages)-1]
		s.instrs = append(s.instrs, kw+" "+strings.TrimSpace(rest))
	}
	for _, l := range strings.Split(string(mustRead(t, "deployments", "Dockerfile")), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur.WriteString(strings.TrimSuffix(l, "\\") + " ")
			continue
		}
		cur.WriteString(l)
		flush()
	}
	flush()
	return stages
}

// goBuildLine is the Dockerfile's build command: its environment
// assignments and go build arguments, up to the next && or end.
var goBuildLine = regexp.MustCompile(`((?:[A-Z_]+=\S+\s+)*)go build\s+([^&;]+)`)

// TestDockerfile checks the image recipe statically: a Go builder stage on
// the go.mod Go version, CGO off, -trimpath; a distroless/scratch final
// stage that runs as a numeric non-root user with the binary as entrypoint.
func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	goMod := string(mustRead(t, "go.mod"))
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(goMod)
	if !strings.HasPrefix(build.from, "golang:"+goVer[1]) {
		t.Errorf("builder %s: want golang:%s (go.mod's go %s)", build.from, goVer[1], goVer[1])
	}
	run := strings.Join(build.instrs, "\n")
	m := goBuildLine.FindStringSubmatch(run)
	if m == nil {
		t.Fatal("no go build in the builder stage")
	}
	for _, want := range []string{"CGO_ENABLED=0"} {
		if !strings.Contains(m[1], want) {
			t.Errorf("go build without %s", want)
		}
	}
	for _, want := range []string{"-trimpath", "./cmd/kubesift", "-o /out/kubesift"} {
		if !strings.Contains(m[2], want) {
			t.Errorf("go build %s: no %s", m[2], want)
		}
	}
	if !strings.HasPrefix(final.from, "gcr.io/distroless/static") && final.from != "scratch" {
		t.Errorf("final stage FROM %s: want distroless/static or scratch", final.from)
	}
	var user, entry string
	var copied bool
	for _, in := range final.instrs {
		switch {
		case strings.HasPrefix(in, "USER "):
			user = strings.TrimPrefix(in, "USER ")
		case strings.HasPrefix(in, "ENTRYPOINT "):
			entry = strings.TrimPrefix(in, "ENTRYPOINT ")
		case strings.HasPrefix(in, "COPY --from="+build.name+" /out/kubesift /kubesift"):
			copied = true
		case strings.HasPrefix(in, "RUN "):
			t.Errorf("final stage runs %q: it has no shell", in)
		}
	}
	if !regexp.MustCompile(`^[1-9]\d*:[1-9]\d*$`).MatchString(user) {
		t.Errorf("final USER %q: want numeric non-root uid:gid (Kubernetes runAsNonRoot can only verify numbers)", user)
	}
	if entry != `["/kubesift"]` {
		t.Errorf("ENTRYPOINT %s, want [\"/kubesift\"]", entry)
	}
	if !copied {
		t.Errorf("final stage does not copy /out/kubesift from stage %q to /kubesift", build.name)
	}
	ignore := string(mustRead(t, ".dockerignore"))
	for _, p := range []string{".git", ".testenv"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(p) + `$`).MatchString(ignore) {
			t.Errorf(".dockerignore does not exclude %s", p)
		}
	}
}

// TestDockerfileBinaryIsStatic builds kubesift with the Dockerfile's own go
// build command (its environment and flags, read from the file) — what
// `docker build` runs, without Docker — and checks the result: a static ELF
// (no interpreter, no dynamic section, which distroless/static and scratch
// need), whose `version` runs and carries the stamped version.
func TestDockerfileBinaryIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	m := goBuildLine.FindStringSubmatch(strings.Join(parseDockerfile(t)[0].instrs, "\n"))
	if m == nil {
		t.Fatal("no go build in the Dockerfile")
	}
	out := filepath.Join(t.TempDir(), "kubesift")
	const version = "deploy-test"
	args := shellWords(strings.ReplaceAll(m[2], "${VERSION}", version))
	for i, a := range args {
		if a == "-o" && i+1 < len(args) {
			args[i+1] = out
		}
	}
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Dir = repo()
	cmd.Env = append(os.Environ(), strings.Fields(m[1])...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("program header %s: the binary is dynamically linked", p.Type)
		}
	}
	if s := f.Section(".dynamic"); s != nil {
		t.Error("the binary has a .dynamic section")
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary imports %v", libs)
	}
	b, err := exec.Command(out, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(b), "kubesift "+version) {
		t.Errorf("kubesift version: %v: %s", err, b)
	}
	if st, err := os.Stat(out); err == nil {
		t.Logf("static binary: %.1f MiB; %s", float64(st.Size())/(1<<20), strings.TrimSpace(string(b)))
	}
}

// shellWords splits a command line the way sh would for the simple quoting
// a Dockerfile uses ("..." and '...', no escapes inside).
func shellWords(s string) []string {
	var (
		out   []string
		cur   strings.Builder
		quote rune
		in    bool
	)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}
