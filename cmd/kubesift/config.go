package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kubesift/kubesift/internal/config"
)

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check and print configuration files",
		Example: `  kubesift config print-defaults > config.yaml
  kubesift config validate config.yaml`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate FILE",
		Short: "Validate a configuration file; every error names its field or line",
		Example: `  kubesift config validate /etc/kubesift/config.yaml
  # errors look like:
  #   config.yaml: sink.elasticsearch.addresses[0]: not a URL
  #   config.yaml: yaml: unmarshal errors: line 4: field brokerz not found in type config.KafkaConfig`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := config.Load(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", args[0])
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "print-defaults",
		Short:   "Print the default configuration as YAML",
		Example: `  kubesift config print-defaults > config.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d := config.Default()
			out, err := config.Marshal(&d)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	})
	return cmd
}
