package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/testenv"
)

// The documentation's command lines must run. TestDocumentedCommandsRun
// extracts every `kubesift …` command line from the Markdown files of the
// repository (fenced code and inline code) and from the comments of the
// files under deployments/ (YAML, Dockerfile, compose), and checks each one
// in two ways:
//
//   - in process, resolved as cobra would run it (root.Find, the flags
//     parsed by the command's FlagSet, its Args validator, its required
//     flags) without running it: this is what catches an unknown command
//     under a group or a wrong number of arguments, because `--help` makes
//     cobra print help before it validates anything;
//   - against the built binary (testenv.Kubesift) with --help appended,
//     which must exit 0: the line as a user would paste it.
//
// Lines are read as a shell reads them: quotes, line continuations, env
// assignments in front, and only the kubesift part of a pipeline, a && or a
// ; chain. Placeholders are filled in: $(…) and $VAR, <file>, and synopsis
// notation — [optional] parts are kept, a|b takes a, and … or ... after a
// word is dropped. In running text (inline code, comments) a mention that is
// only a command's name, `kubesift rules eval`, must name a command; the
// arguments it would need to run are not asked of it.

// notCommands are backticked texts that start like a command and are not.
var notCommands = map[string]string{
	"kubesift alerts": "the name of a Kibana data view (docs/kibana.md)",
}

// docCommand is one kubesift command line found in the documentation.
type docCommand struct {
	where string   // file:line
	text  string   // as written
	env   []string // NAME=value assignments before it
	args  []string // after the program name
	// inText: inline code or a comment, where `kubesift rules eval`
	// names the command rather than runs it; a code line runs.
	inText bool
}

// shellWord is a word of a shell command line, or an operator.
type shellWord struct {
	text   string
	op     bool // | || && ; &
	quoted bool // had quotes: "" is a word, "…" a value
}

// splitShell splits a command line into words and operators. Redirections
// and their targets are dropped; $(…), $VAR and <placeholder> become "x"; a
// # at the start of a word ends the line.
func splitShell(s string) []shellWord {
	var (
		out          []shellWord
		cur          strings.Builder
		in, quoted   bool
		dropNextWord bool
	)
	flush := func() {
		if in {
			if dropNextWord {
				dropNextWord = false
			} else {
				out = append(out, shellWord{text: cur.String(), quoted: quoted})
			}
		}
		cur.Reset()
		in, quoted = false, false
	}
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		next := func(k int) rune {
			if i+k < len(rs) {
				return rs[i+k]
			}
			return 0
		}
		switch {
		case r == '\\' && i+1 < len(rs):
			i++
			cur.WriteRune(rs[i])
			in = true
		case r == '\'':
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			cur.WriteString(string(rs[i+1 : min(j, len(rs))]))
			i, in, quoted = j, true, true
		case r == '"':
			j := i + 1
			for j < len(rs) && rs[j] != '"' {
				if rs[j] == '\\' {
					j++
				}
				j++
			}
			cur.WriteString(expandQuoted(rs[i+1 : min(j, len(rs))]))
			i, in, quoted = j, true, true
		case r == '$' && next(1) == '(':
			depth, j := 0, i+1
			for ; j < len(rs); j++ {
				if rs[j] == '(' {
					depth++
				} else if rs[j] == ')' {
					if depth--; depth == 0 {
						break
					}
				}
			}
			cur.WriteString("x")
			i, in = j, true
		case r == '$' && (next(1) == '{' || isNameRune(next(1))):
			j := i + 1
			if rs[j] == '{' {
				for j < len(rs) && rs[j] != '}' {
					j++
				}
			} else {
				for j+1 < len(rs) && isNameRune(rs[j+1]) {
					j++
				}
			}
			cur.WriteString("x")
			i, in = j, true
		case r == '<' && placeholderEnd(rs, i) > 0:
			cur.WriteString("x")
			i, in = placeholderEnd(rs, i), true
		case r == '<' || r == '>':
			// A redirection: "2>&1" is complete, "> file" drops the file.
			if in && strings.Trim(cur.String(), "0123456789") == "" {
				cur.Reset()
				in = false
			}
			flush()
			for next(1) == '>' || next(1) == '<' {
				i++
			}
			if next(1) == '&' {
				i++
				for isDigit(next(1)) || next(1) == '-' {
					i++
				}
				continue
			}
			dropNextWord = true
		case r == '|' && in && next(1) != ' ' && next(1) != '|' && next(1) != 0:
			cur.WriteRune(r) // synopsis alternatives: table|json
		case r == '|' || r == ';' || r == '&':
			flush()
			op := string(r)
			if (r == '|' || r == '&') && next(1) == r {
				op += string(r)
				i++
			}
			out = append(out, shellWord{text: op, op: true})
		case r == ' ' || r == '\t' || r == '\n':
			flush()
		case r == '#' && !in:
			flush()
			return out
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	flush()
	return out
}

// expandQuoted is the text of a "double-quoted" part: $(…) and $VAR
// become x, backslash escapes their character.
func expandQuoted(rs []rune) string {
	var b strings.Builder
	for i := 0; i < len(rs); i++ {
		switch {
		case rs[i] == '\\' && i+1 < len(rs):
			i++
			b.WriteRune(rs[i])
		case rs[i] == '$' && i+1 < len(rs) && (rs[i+1] == '(' || rs[i+1] == '{'):
			end := ')'
			if rs[i+1] == '{' {
				end = '}'
			}
			j := i + 2
			for j < len(rs) && rs[j] != end {
				j++
			}
			b.WriteString("x")
			i = j
		case rs[i] == '$' && i+1 < len(rs) && isNameRune(rs[i+1]):
			j := i + 1
			for j+1 < len(rs) && isNameRune(rs[j+1]) {
				j++
			}
			b.WriteString("x")
			i = j
		default:
			b.WriteRune(rs[i])
		}
	}
	return b.String()
}

// placeholderEnd is the index of the > closing a <placeholder> that starts
// at i (no space inside), else 0.
func placeholderEnd(rs []rune, i int) int {
	for j := i + 1; j < len(rs); j++ {
		switch rs[j] {
		case '>':
			if j > i+1 {
				return j
			}
			return 0
		case ' ', '\t', '<':
			return 0
		}
	}
	return 0
}

func isNameRune(r rune) bool {
	return r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || isDigit(r)
}

func isDigit(r rune) bool { return r >= '0' && r <= '9' }

var envAssignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// shellCommands returns the kubesift invocations of a command line: the
// segments of its pipelines and lists whose program is kubesift, a path to
// it, or `go run ./cmd/kubesift`.
func shellCommands(where, text string) []docCommand {
	var (
		out []docCommand
		seg []shellWord
	)
	end := func() {
		if c, ok := kubesiftInvocation(seg); ok {
			c.where, c.text = where, strings.TrimSpace(text)
			out = append(out, c)
		}
		seg = nil
	}
	for _, w := range splitShell(text) {
		if w.op {
			end()
			continue
		}
		seg = append(seg, w)
	}
	end()
	return out
}

func kubesiftInvocation(ws []shellWord) (docCommand, bool) {
	var c docCommand
	for len(ws) > 0 && !ws[0].quoted && envAssignment.MatchString(ws[0].text) {
		c.env = append(c.env, ws[0].text)
		ws = ws[1:]
	}
	for len(ws) > 0 && (ws[0].text == "sudo" || ws[0].text == "env" || ws[0].text == "exec" || ws[0].text == "time") {
		ws = ws[1:]
	}
	switch {
	case len(ws) > 0 && (ws[0].text == "kubesift" || strings.HasSuffix(ws[0].text, "/kubesift")):
		ws = ws[1:]
	case len(ws) > 2 && ws[0].text == "go" && ws[1].text == "run" && strings.HasSuffix(ws[2].text, "/cmd/kubesift"):
		ws = ws[3:]
	default:
		return c, false
	}
	c.args = synopsisArgs(ws)
	return c, true
}

// synopsisArgs turns the words of a documented command into arguments:
// [optional] parts are kept without brackets, a|b becomes a, and a word's
// trailing … or ... (repetition) is dropped; a bare … after a flag stands
// for its value.
func synopsisArgs(ws []shellWord) []string {
	args := []string{}
	for _, w := range ws {
		t := w.text
		if w.quoted {
			if strings.Trim(t, "….") == "" {
				t = "x"
			}
			args = append(args, t)
			continue
		}
		for before := ""; before != t; {
			before = t
			t = strings.TrimSuffix(strings.TrimSuffix(t, "…"), "...")
			t = strings.TrimSuffix(strings.TrimPrefix(t, "["), "]")
		}
		if a, _, ok := strings.Cut(t, "|"); ok {
			t = a
		}
		if t == "" {
			if n := len(args); n > 0 && strings.HasPrefix(args[n-1], "-") && !strings.Contains(args[n-1], "=") {
				args = append(args, "x")
			}
			continue
		}
		args = append(args, t)
	}
	return args
}

var (
	fence      = regexp.MustCompile("^\\s*(```|~~~)")
	inlineCode = regexp.MustCompile("`([^`]+)`")
	quotedText = regexp.MustCompile(`"(kubesift [^"]+)"`)
	proseStart = regexp.MustCompile(`(?:^|[\s(])(kubesift\s+[a-z])`)
)

// markdownCommands finds the command lines of a Markdown file: every line
// of fenced code (continuations joined), and inline code spans outside it.
func markdownCommands(file, text string) []docCommand {
	var (
		out   []docCommand
		prose strings.Builder
		in    bool
	)
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if fence.MatchString(line) {
			in = !in
			prose.WriteString("\n")
			continue
		}
		if !in {
			prose.WriteString(line + "\n")
			continue
		}
		prose.WriteString("\n")
		start := i
		cmd := strings.TrimSpace(line)
		for strings.HasSuffix(cmd, "\\") && i+1 < len(lines) {
			i++
			prose.WriteString("\n")
			cmd = strings.TrimSuffix(cmd, "\\") + " " + strings.TrimSpace(lines[i])
		}
		cmd = strings.TrimPrefix(cmd, "$ ")
		out = append(out, shellCommands(file+":"+strconv.Itoa(start+1), cmd)...)
	}
	// prose keeps the line structure, so a span's offset gives its line.
	p := prose.String()
	for _, m := range inlineCode.FindAllStringSubmatchIndex(p, -1) {
		span := strings.Join(strings.Fields(p[m[2]:m[3]]), " ")
		if _, skip := notCommands[span]; skip {
			continue
		}
		out = append(out, inText(shellCommands(file+":"+strconv.Itoa(strings.Count(p[:m[0]], "\n")+1), span))...)
	}
	return out
}

// commentCommands finds the command lines in the # comments of a file:
// code spans and "quoted" commands, indented lines (code in a comment, its
// continuations joined), and in prose a kubesift mention that has a flag
// (up to a bracket or the end of the clause) — "kubesift collect on every
// node" is a sentence, "kubesift silence --server URL" a command.
func commentCommands(file, text string) []docCommand {
	var out []docCommand
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		c, ok := comment(lines[i])
		if !ok {
			continue
		}
		where := file + ":" + strconv.Itoa(i+1)
		if strings.HasPrefix(c, "  ") {
			cmd := strings.TrimSpace(c)
			for strings.HasSuffix(cmd, "\\") && i+1 < len(lines) {
				nc, ok := comment(lines[i+1])
				if !ok {
					break
				}
				i++
				cmd = strings.TrimSuffix(cmd, "\\") + " " + strings.TrimSpace(nc)
			}
			out = append(out, shellCommands(where, cmd)...)
			continue
		}
		for _, m := range inlineCode.FindAllStringSubmatch(c, -1) {
			out = append(out, inText(shellCommands(where, m[1]))...)
		}
		for _, m := range quotedText.FindAllStringSubmatch(c, -1) {
			out = append(out, inText(shellCommands(where, m[1]))...)
		}
		c = inlineCode.ReplaceAllString(quotedText.ReplaceAllString(c, ""), "")
		for _, m := range proseStart.FindAllStringSubmatchIndex(c, -1) {
			mention := c[m[2]:]
			if j := strings.IndexAny(mention, ")("); j >= 0 {
				mention = mention[:j]
			}
			for _, stop := range []string{"; ", ", ", ". "} {
				if j := strings.Index(mention, stop); j >= 0 {
					mention = mention[:j]
				}
			}
			mention = strings.TrimRight(strings.TrimSpace(mention), ".,;:")
			if strings.Contains(" "+mention, " -") {
				out = append(out, inText(shellCommands(where, mention))...)
			}
		}
	}
	return out
}

func inText(cmds []docCommand) []docCommand {
	for i := range cmds {
		cmds[i].inText = true
	}
	return cmds
}

// comment is the text of the # comment on a line, if it has one: a # at
// the start of the line or after a blank, outside quotes.
func comment(line string) (string, bool) {
	var quote rune
	for i, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'':
			quote = r
		case r == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return strings.TrimPrefix(line[i+1:], " "), true
		}
	}
	return "", false
}

// documentedCommands reads every command line of the repository's
// documentation.
func documentedCommands(t *testing.T) []docCommand {
	t.Helper()
	root := testenv.Root()
	out, err := exec.Command("git", "-C", root, "ls-files", "*.md", "deployments").Output()
	if err != nil {
		// A silent skip here would let stale commands back into the docs
		// unnoticed: under KUBESIFT_REQUIRE_REAL=1 (make test, CI) it fails.
		testenv.Missing(t, fmt.Sprintf("git ls-files: %v (the documentation test reads the checkout)", err))
	}
	var cmds []docCommand
	for _, rel := range strings.Fields(string(out)) {
		if strings.Contains(rel, "testdata/") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Base(rel)
		switch {
		case strings.HasSuffix(rel, ".md"):
			cmds = append(cmds, markdownCommands(rel, string(b))...)
		case strings.HasSuffix(rel, ".yaml") || strings.HasSuffix(rel, ".yml") || strings.HasPrefix(base, "Dockerfile"):
			cmds = append(cmds, commentCommands(rel, string(b))...)
		}
	}
	return cmds
}

// checkCommandLine resolves args as cobra would run them and checks the
// command exists, its flags parse, its arguments pass its validator and its
// required flags are set — without running it. A mention in text that is
// only a command's name (`kubesift rules eval`) must name a command; what
// running it needs is not asked of it.
func checkCommandLine(args []string, inText bool) error {
	root := newRootCommand()
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	cmd, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	cmd.InitDefaultHelpFlag()
	if err := cmd.ParseFlags(rest); err != nil {
		return err
	}
	if help, _ := cmd.Flags().GetBool("help"); help {
		return nil // a documented --help prints help, whatever else is there
	}
	if v, _ := cmd.Flags().GetBool("version"); v && cmd == root {
		return nil
	}
	pos := cmd.Flags().Args()
	if inText && len(rest) == 0 {
		return nil
	}
	if cmd.Name() == "help" && cmd.Parent() == root {
		_, err := subcommand(root, pos)
		return err
	}
	if err := cmd.ValidateArgs(pos); err != nil {
		return err
	}
	if err := cmd.ValidateRequiredFlags(); err != nil {
		return err
	}
	return cmd.ValidateFlagGroups()
}

// TestDocumentedCommandsRun: see the comment at the top of this file.
func TestDocumentedCommandsRun(t *testing.T) {
	cmds := documentedCommands(t)
	if len(cmds) < 50 {
		t.Fatalf("found %d documented command lines: the extraction is broken", len(cmds))
	}
	for _, c := range cmds {
		if err := checkCommandLine(c.args, c.inText); err != nil {
			t.Errorf("%s: %s\n\tkubesift %q: %v", c.where, c.text, c.args, err)
		}
	}
	t.Logf("%d documented command lines checked", len(cmds))
	bin := testenv.Kubesift(t)
	seen := map[string]bool{}
	for _, c := range cmds {
		key := strings.Join(c.env, " ") + "\x00" + strings.Join(c.args, "\x00")
		if seen[key] {
			continue
		}
		seen[key] = true
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		run := exec.CommandContext(ctx, bin, append(append([]string(nil), c.args...), "--help")...)
		run.Env = append(os.Environ(), c.env...)
		out, err := run.CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(out), "Usage:") {
			t.Errorf("%s: %s\n\tkubesift %q --help: %v\n%s", c.where, c.text, c.args, err, out)
		}
	}
}

// TestCommandLineExtraction pins how documentation text becomes arguments.
func TestCommandLineExtraction(t *testing.T) {
	tests := []struct {
		name, text string
		comment    bool // a # comment of a YAML file, not Markdown
		want       []string
		env        []string
	}{
		{name: "fenced with a prompt and a comment", text: "```sh\n$ kubesift config print-defaults    # every key\n```\n",
			want: []string{"config|print-defaults"}},
		{name: "continuation", text: "```\nkubesift setup kibana -c p.yaml --url https://k:5601 \\\n  --space security\n```\n",
			want: []string{"setup|kibana|-c|p.yaml|--url|https://k:5601|--space|security"}},
		{name: "pipe into kubesift, redirect", text: "```\nkubectl get events -A -o json | kubesift rules eval --cluster prod - > alerts.json 2>&1\n```\n",
			want: []string{"rules|eval|--cluster|prod|-"}},
		{name: "kubesift piped on, && chain", text: "```\nkubesift posture scan -o json | jq .check_id && kubesift version\n```\n",
			want: []string{"posture|scan|-o|json", "version"}},
		{name: "env and command substitution", text: "```\nKUBESIFT_SILENCE_API_TOKEN=$(cat tok) kubesift silence list --server \"$URL\"\n```\n",
			want: []string{"silence|list|--server|x"}, env: []string{"KUBESIFT_SILENCE_API_TOKEN=x"}},
		{name: "go run", text: "```\ngo run ./cmd/kubesift run examples/scenario\n```\n", want: []string{"run|examples/scenario"}},
		{name: "not kubesift", text: "```\nhelm install kubesift deployments/helm/kubesift\nkubectl -n kubesift get pods\n```\n"},
		{name: "inline synopsis", text: "Use `kubesift posture scan [--kubeconfig KC] [-o table|json]` or\n`kubesift silence expire ID…` and `kubesift run FILE|DIR...`.\n",
			want: []string{"posture|scan|--kubeconfig|KC|-o|table", "silence|expire|ID", "run|FILE"}},
		{name: "inline across lines, quoted ellipsis", text: "CLI: `kubesift silence add -m a=b --comment\n\"…\" [--force]`\n",
			want: []string{"silence|add|-m|a=b|--comment|x|--force"}},
		{name: "a flag's elided value", text: "Run `kubesift setup kibana --url …` once.\n", want: []string{"setup|kibana|--url|x"}},
		{name: "placeholder", text: "Check with `kubesift config validate <file>`.\n", want: []string{"config|validate|x"}},
		{name: "not a command", text: "Data views → `kubesift alerts`; the field `kubesift.alert.severity`.\n"},
		{name: "comment: code span", comment: true, text: "# check a change with `kubesift config validate -c <file>`.\nkey: 1\n",
			want: []string{"config|validate|-c|x"}},
		{name: "comment: prose with a flag", comment: true, text: "  - \"9094:9094\" # silence API (kubesift silence --url http://localhost:9094)\n",
			want: []string{"silence|--url|http://localhost:9094"}},
		{name: "comment: prose without a flag", comment: true, text: "# kubesift collect on every node (DaemonSet kubesift-collector): the Events\n"},
		{name: "comment: quoted", comment: true, text: "          # \"kubesift setup es\" once with an admin key instead.\n", want: []string{"setup|es"}},
		{name: "comment: indented code", comment: true, text: "#   kubesift run -c run.yaml \\\n#     examples/scenario\n",
			want: []string{"run|-c|run.yaml|examples/scenario"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var cmds []docCommand
			if tc.comment {
				cmds = commentCommands("f.yaml", tc.text)
			} else {
				cmds = markdownCommands("f.md", tc.text)
			}
			var got, env []string
			for _, c := range cmds {
				got = append(got, strings.Join(c.args, "|"))
				env = append(env, c.env...)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") || strings.Join(env, " ") != strings.Join(tc.env, " ") {
				t.Errorf("got %q (env %q)\nwant %q (env %q)", got, env, tc.want, tc.env)
			}
		})
	}
}
