package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// walkCommands calls fn on every command of the tree below (and with) root,
// help and completion included; hidden commands are skipped.
func walkCommands(root *cobra.Command, fn func(c *cobra.Command)) {
	if root.Hidden {
		return
	}
	fn(root)
	for _, sub := range root.Commands() {
		walkCommands(sub, fn)
	}
}

// commandArgs is the argument list that reaches c from the root.
func commandArgs(c *cobra.Command) []string {
	var path []string
	for ; c.HasParent(); c = c.Parent() {
		path = append([]string{c.Name()}, path...)
	}
	return path
}

// typo is name with its second letter left out ("eval" -> "evl").
func typo(name string) string {
	if len(name) < 3 {
		return name + "x"
	}
	return name[:1] + name[2:]
}

// TestEveryCommandRejectsTyposAndUnknownFlags walks the whole command tree
// — so a command added later is covered without touching this test — and
// runs, for every group, a misspelt subcommand and, for every command, an
// unknown flag: each must be a usage error (exit 2) that names what was
// wrong, with the subcommand meant as a suggestion.
func TestEveryCommandRejectsTyposAndUnknownFlags(t *testing.T) {
	var groups, all int
	walkCommands(newRootCommand(), func(c *cobra.Command) {
		path := commandArgs(c)
		all++
		t.Run(strings.Join(append([]string{"kubesift"}, path...), " "), func(t *testing.T) {
			_, errs, code := runCLI(t, "", append(path, "--no-such-flag")...)
			if code != exitUsage || !strings.Contains(errs, "unknown flag: --no-such-flag") {
				t.Errorf("unknown flag: exit %d, stderr %q; want %d and the flag named", code, errs, exitUsage)
			}
			if !c.HasSubCommands() {
				return
			}
			groups++
			var meant string
			for _, sub := range c.Commands() {
				if sub.IsAvailableCommand() {
					meant = sub.Name()
					break
				}
			}
			bad := typo(meant)
			_, errs, code = runCLI(t, "", append(path, bad, "x")...)
			want := `unknown command "` + bad + `" for "` + c.CommandPath() + `"`
			if code != exitUsage || !strings.Contains(errs, want) || !strings.Contains(errs, "Did you mean this?\n\t") || !strings.Contains(errs, "\t"+meant+"\n") {
				t.Errorf("%q: exit %d, stderr %q; want %d, %q and the suggestion %q", bad, code, errs, exitUsage, want, meant)
			}
		})
	})
	if groups < 6 || all < 20 {
		t.Errorf("walked %d commands, %d groups: the walk misses the tree", all, groups)
	}
}

// TestUsageErrors: the cases the platform team reported and their kin. A
// usage error exits 2, a command that ran and failed 1, and help exits 0.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr []string
		wantOut string
	}{
		{"typo under rules", []string{"rules", "evl", "x"}, 2,
			[]string{`unknown command "evl" for "kubesift rules"`, "Did you mean this?\n\teval\n", "Run 'kubesift rules --help' for usage"}, ""},
		{"typo under silence", []string{"silence", "creat"}, 2, []string{`unknown command "creat" for "kubesift silence"`}, ""},
		{"another tool's verb", []string{"silence", "create"}, 2, []string{"Did you mean this?\n\tadd\n"}, ""},
		{"typo under setup", []string{"setup", "kafak"}, 2, []string{`unknown command "kafak" for "kubesift setup"`}, ""},
		{"typo at the root", []string{"rulez"}, 2, []string{`unknown command "rulez" for "kubesift"`, "\trules\n"}, ""},
		{"typo two levels down", []string{"config", "valdate", "x.yaml"}, 2, []string{"\tvalidate\n"}, ""},
		{"help on a typo", []string{"help", "rules", "evl"}, 2, []string{`unknown command "evl" for "kubesift rules"`, "\teval\n"}, ""},
		{"too many arguments", []string{"version", "extra"}, 2, []string{`unknown command "extra" for "kubesift version"`}, ""},
		{"missing argument", []string{"config", "validate"}, 2, []string{"accepts 1 arg(s), received 0", "Run 'kubesift config validate --help'"}, ""},
		{"bad flag value", []string{"silence", "add", "-m", "a=b", "--duration", "soon"}, 2, []string{`invalid argument "soon" for "--duration"`}, ""},
		{"bad output format", []string{"version", "-o", "yaml"}, 2, []string{`"yaml" is not one of text, json`}, ""},
		{"flag of another command", []string{"rules", "lint", "--cluster", "x"}, 2, []string{"unknown flag: --cluster"}, ""},
		{"decode needs input", []string{"records", "decode"}, 2, []string{"name at least one FILE"}, ""},
		{"group alone shows help", []string{"rules"}, 0, nil, "Available Commands:"},
		{"root alone shows help", []string{}, 0, nil, "Available Commands:"},
		{"help of a command", []string{"help", "rules", "eval"}, 0, nil, "kubesift rules eval"},
		{"a failure is 1", []string{"config", "validate", "/nonexistent/kubesift.yaml"}, 1, []string{"no such file"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, code := runCLI(t, "", tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, errs)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr %q does not contain %q", errs, w)
				}
			}
			if !strings.Contains(out, tc.wantOut) {
				t.Errorf("stdout %q does not contain %q", out, tc.wantOut)
			}
		})
	}
}
