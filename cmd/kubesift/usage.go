package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// exitUsage is the exit status of a usage error — an unknown command or
// flag, a flag value that does not parse, a wrong number of arguments —
// apart from 1 for a command that ran and failed, so that a script can
// tell a typo from a failure.
const exitUsage = 2

// usageError marks err as a usage error of cmd: exit 2, and a pointer to
// the command's help.
func usageError(cmd *cobra.Command, err error) error {
	return &exitError{code: exitUsage, err: fmt.Errorf("%w\nRun '%s --help' for usage", err, cmd.CommandPath())}
}

// unknownCommand is the usage error of a group given a name that is none
// of its subcommands, with the names close to it.
func unknownCommand(cmd *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, cmd.CommandPath())
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t") + "\n"
	}
	return usageError(cmd, errors.New(msg))
}

// strictTree makes every command of the tree fail loudly on a usage error.
// It walks the tree once, after every command (help and completion
// included) is added, so a command added later is covered without doing
// anything; TestEveryCommandRejectsTyposAndUnknownFlags walks it too.
//
// Cobra on its own checks the subcommand names of the root only: a group
// below it ("kubesift rules evl") cannot run, so cobra prints its help and
// exits 0 without looking at the arguments. Here every group validates its
// arguments as unknown subcommands (with suggestions) and, given none,
// prints its help; every validator of arguments (cobra.NoArgs, ExactArgs,
// ...) and every flag parse error becomes a usage error.
func strictTree(root *cobra.Command) {
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError(c, err) })
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.SuggestionsMinimumDistance = 2
		if c.HasSubCommands() {
			c.Args = unknownSubcommand
			if c.Run == nil && c.RunE == nil {
				c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
			}
		} else {
			c.Args = usageArgs(c.Args)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return unknownCommand(cmd, args[0])
}

// usageArgs makes the errors of an argument validator usage errors; nil
// (cobra's default for a command without subcommands) accepts anything.
func usageArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	if v == nil {
		v = cobra.ArbitraryArgs
	}
	return func(cmd *cobra.Command, args []string) error {
		if err := v(cmd, args); err != nil {
			return usageError(cmd, err)
		}
		return nil
	}
}

// newHelpCommand replaces cobra's help command, which answers an unknown
// topic ("kubesift help rules evl") with the root's usage and exit 0.
func newHelpCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "help [COMMAND...]",
		Short:   "Help about any command",
		Example: `  kubesift help rules eval`,
		ValidArgsFunction: func(c *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			target, err := subcommand(c.Root(), args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var names []cobra.Completion
			for _, s := range target.Commands() {
				if s.IsAvailableCommand() {
					names = append(names, cobra.CompletionWithDesc(s.Name(), s.Short))
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			target, err := subcommand(c.Root(), args)
			if err != nil {
				return err
			}
			return target.Help()
		},
	}
}

// subcommand is the command that the names in path lead to from root.
func subcommand(root *cobra.Command, path []string) (*cobra.Command, error) {
	target := root
	for _, name := range path {
		var next *cobra.Command
		for _, s := range target.Commands() {
			if s.Name() == name || s.HasAlias(name) {
				next = s
				break
			}
		}
		if next == nil {
			return nil, unknownCommand(target, name)
		}
		target = next
	}
	return target, nil
}
