package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules"
)

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check and print configuration files",
		Example: `  kubesift config print-defaults > config.yaml
  kubesift config validate config.yaml`,
	}
	cmd.AddCommand(newConfigValidateCommand(), newConfigPrintDefaultsCommand())
	return cmd
}

// validateResult is what `config validate -o json` prints.
type validateResult struct {
	File  string `json:"file"`
	Valid bool   `json:"valid"`
	// Rules counts the rules and posture checks compiled.
	Rules int `json:"rules"`
	// FilesChecked counts the files and rule directories checked.
	FilesChecked int                  `json:"files_checked"`
	Errors       []*config.FieldError `json:"errors"`
}

func newConfigValidateCommand() *cobra.Command {
	var (
		out   outputFormat
		files bool
	)
	cmd := &cobra.Command{
		Use:   "validate FILE",
		Short: "Validate a configuration file and every file it names; every error names its line and field",
		Long: `validate reads FILE as every command reads its --config: strictly, so that an unknown key or a
value of the wrong type is an error naming the line, the field's path, the type expected and
the closest known key. It validates every field, and then checks what a component would
otherwise find only when it starts:
  - every file the configuration names exists and parses: TLS certificates with their keys
    (a matching pair), CA bundles, the *_file secrets (readable and not empty; their content
    is never shown), collector.kubeconfig;
  - the rules: the built-in pack (unless processor.rules.no_builtin) and processor.rules.dirs
    load and compile as kubesift process loads them, the posture checks among them.
Files kubesift writes (collector.audit_tail.positions_file, publish.spool.dir) or waits for
(collector.audit_tail.paths) are not checked. Away from where the configuration runs (the
files are mounted in the pod), --files=false leaves the files and rule directories out and
compiles the built-in pack only. The exit status is 0 for a valid file and 1 otherwise; -o
json prints {"file", "valid", "rules", "files_checked", "errors": [{"file", "line", "field",
"message"}]} in both cases.`,
		Example: `  kubesift config validate /etc/kubesift/config.yaml
  kubesift config validate -o json config.yaml | jq -r '.errors[] | "\(.line): \(.field)"'
  kubesift config validate --files=false deployments/kubernetes/overlays/central/config/processor.yaml
  # errors look like:
  #   config.yaml: line 3: sink.elasticsearch.addresses[0]: not a URL
  #   config.yaml: line 4: kafka.brokerz: unknown key (did you mean "brokers"?)
  #   config.yaml: line 9: kafka.tls.ca_file: stat /etc/kafka/ca.pem: no such file or directory`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := validateConfigFile(args[0], files)
			if out.json() {
				if werr := writeJSON(cmd.OutOrStdout(), res); werr != nil {
					return werr
				}
				if !res.Valid {
					return &exitError{code: 1, err: fmt.Errorf("%s: %d problem(s)", args[0], len(res.Errors))}
				}
				return nil
			}
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d rules and posture checks compiled, %d files checked)\n",
				args[0], res.Rules, res.FilesChecked)
			return nil
		},
	}
	cmd.Flags().BoolVar(&files, "files", true, "check the files the configuration names and compile its rule directories")
	out.bind(cmd, "text")
	return cmd
}

// validateConfigFile parses path as every command does, then (with files)
// checks the files it names, and compiles its rules; err lists every
// problem (one per line), res says the same for -o json.
func validateConfigFile(path string, files bool) (res validateResult, err error) {
	res = validateResult{File: path, Errors: []*config.FieldError{}}
	defer func() {
		res.Valid = err == nil
		var es config.Errors
		switch {
		case errors.As(err, &es):
			res.Errors = es
		case err != nil:
			res.Errors = []*config.FieldError{{File: path, Message: err.Error()}}
		}
	}()
	doc, err := config.LoadDocument(path)
	if err != nil {
		return res, err
	}
	c := doc.Config
	var filesErr error
	if files {
		for _, f := range c.Files() {
			if f.Kind != config.FileState && f.Kind != config.FileInput {
				res.FilesChecked++
			}
		}
		filesErr = c.CheckFiles()
	}
	n, rulesErr := compileConfiguredRules(c, files)
	res.Rules = n
	if err := errors.Join(filesErr, rulesErr); err != nil {
		return res, doc.Locate(err)
	}
	return res, nil
}

// compileConfiguredRules loads the rules of processor.rules as `kubesift
// process` does (rules.New), its directories only withDirs: the object
// rules among them are the posture checks, compiled in the same set. It
// returns how many it compiled.
func compileConfiguredRules(c *config.Config, withDirs bool) (int, error) {
	rc := c.Processor.Rules
	if !withDirs {
		rc.Dirs = nil
	}
	eng, err := rules.New(rules.LoadOptions{NoBuiltin: rc.NoBuiltin, Dirs: rc.Dirs})
	if err != nil {
		return 0, fmt.Errorf("processor.rules.dirs: %w", err)
	}
	return len(eng.Set().Rules()), nil
}

func newConfigPrintDefaultsCommand() *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "print-defaults",
		Short: "Print the default configuration as YAML (or JSON)",
		Example: `  kubesift config print-defaults > config.yaml
  kubesift config print-defaults -o json | jq .collector.audit_tail`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d := config.Default()
			b, err := config.Marshal(&d)
			if err != nil {
				return err
			}
			if !out.json() {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			// Through YAML, so the keys, durations ("30s") and hidden
			// secrets are those of the file.
			var v any
			if err := yaml.Unmarshal(b, &v); err != nil {
				return err
			}
			return writeJSON(cmd.OutOrStdout(), v)
		},
	}
	out.bind(cmd, "yaml")
	return cmd
}
