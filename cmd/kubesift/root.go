package main

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/logging"
)

// globalFlags are shared by every subcommand.
type globalFlags struct {
	configFile string
	logLevel   string
	logFormat  string
}

func newRootCommand() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "kubesift",
		Short: "Ship Kubernetes audit records and Events to Elasticsearch via Kafka, and alert on them",
		Long: `kubesift collects Kubernetes audit records (audit webhook backend, audit log files) and
Events (client-go informers) from many clusters, publishes them to Kafka, evaluates security
rules written in expr, indexes every record and alert in Elasticsearch, and notifies Slack
and webhooks.

Exit status: 0 done, 1 the command failed or found problems, 2 a usage error (an unknown
command or flag, a bad flag value, a wrong number of arguments), 3 posture scan findings at
--fail-on. Every command that prints data takes -o json.`,
		Example: `  kubesift records decode --sample --summary     # decode a recorded audit log
  kubesift rules eval /var/log/kubernetes/audit.log  # detect on a recorded audit log
  kubesift config print-defaults > config.yaml
  kubesift --version`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVarP(&g.configFile, "config", "c", "", "configuration file (YAML); defaults apply when omitted")
	pf.StringVar(&g.logLevel, "log-level", "", "override log.level (debug, info, warn, error)")
	pf.StringVar(&g.logFormat, "log-format", "", "override log.format (json, text, auto)")
	root.AddCommand(
		newVersionCommand(),
		newConfigCommand(),
		newRecordsCommand(g),
		newCollectCommand(g),
		newProcessCommand(g),
		newRulesCommand(),
		newSetupCommand(g),
		newSilenceCommand(g),
		newNotifyCommand(g),
		newRunCommand(g),
		newPostureCommand(),
		newReportCommand(g),
		newRBACCommand(g),
	)
	// --version prints what `kubesift version` does; declared here, without
	// cobra's -v shorthand, which reads like --verbose.
	root.Version = currentVersion().String()
	root.SetVersionTemplate("{{.Version}}\n")
	root.Flags().Bool("version", false, "print the version, commit and build date")
	// Help and completion exist before strictTree walks the tree (cobra
	// adds them only when executing), so their typos fail too. The
	// completion scripts go to the standard output of this moment.
	root.SetHelpCommand(newHelpCommand())
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	strictTree(root)
	return root
}

// load returns the configuration and a logger built from it and the flags.
func (g *globalFlags) load(cmd *cobra.Command) (*config.Config, *slog.Logger, error) {
	cfg := config.Default()
	c := &cfg
	if g.configFile != "" {
		var err error
		if c, err = config.Load(g.configFile); err != nil {
			return nil, nil, err
		}
	}
	if g.logLevel != "" {
		c.Log.Level = g.logLevel
	}
	if g.logFormat != "" {
		c.Log.Format = g.logFormat
	}
	log, err := logging.New(cmd.ErrOrStderr(), c.Log.Level, c.Log.Format)
	if err != nil {
		return nil, nil, err
	}
	return c, log, nil
}
