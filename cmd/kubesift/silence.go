package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/tlsfiles"
	"github.com/kubesift/kubesift/sink/notify"
)

// silenceFlags locate the silence API of a running `kubesift notify`.
type silenceFlags struct {
	g         *globalFlags
	server    string
	tokenFile string
	caFile    string
	timeout   time.Duration
}

func newSilenceCommand(g *globalFlags) *cobra.Command {
	f := &silenceFlags{g: g}
	cmd := &cobra.Command{
		Use:   "silence",
		Short: "Create, list and expire alert silences",
		Long: `Silences mute the alerts their matchers match until they end. They are stored in
Elasticsearch by the notifiers (notify.silences.index), so they survive restarts and every
replica applies them. These commands talk to a notifier's silence API
(notify.silences.api.listen) with its bearer token: --token-file, else
` + config.EnvSilenceAPIToken + `, else notify.silences.api.token(_file) of --config.
Over HTTPS (notify.silences.api.tls_cert_file) the server's certificate is verified against
the system roots, or against --ca-file.

Matchers use Alertmanager's syntax on alert labels (severity, rule_id, cluster, namespace,
user, verb, resource, name, tactic, technique, tag, ...): name=value, name!=value,
name=~regex, name!~regex. A silence whose matchers match every alert (rule_id=~".+",
severity!="", ...) is refused unless "silence add" is given --force.`,
		Example: `  kubesift silence add -m rule_id=k8s-exec-in-pod -m namespace=ci --duration 4h --comment "CI debug sessions"
  kubesift silence list --server https://kubesift-notify:9095 --ca-file ca.crt --token-file /run/secrets/silence-token
  kubesift silence expire 3f2a9c...`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.server, "server", "", "silence API base URL (default: from notify.silences.api.listen and tls_cert_file, else http://127.0.0.1:9095)")
	pf.StringVar(&f.tokenFile, "token-file", "", "file holding the API bearer token")
	pf.StringVar(&f.caFile, "ca-file", "", "PEM file of the CA certificates that verify an https server (default: the system roots)")
	pf.DurationVar(&f.timeout, "timeout", 30*time.Second, "request timeout")
	cmd.AddCommand(newSilenceAddCommand(f), newSilenceListCommand(f), newSilenceExpireCommand(f))
	return cmd
}

// client builds the API client from flags, environment and configuration.
func (f *silenceFlags) client(cmd *cobra.Command) (*notify.SilenceClient, error) {
	cfg := config.Default()
	c := &cfg
	if f.g.configFile != "" {
		var err error
		if c, err = config.Load(f.g.configFile); err != nil {
			return nil, err
		}
	}
	server := f.server
	if server == "" {
		server = silenceServer(c.Notify.Silences.API)
	}
	token := string(c.Notify.Silences.API.Token)
	if v := os.Getenv(config.EnvSilenceAPIToken); v != "" {
		token = v
	}
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return nil, fmt.Errorf("no API token: use --token-file or %s", config.EnvSilenceAPIToken)
	}
	hc := &http.Client{Timeout: f.timeout}
	if f.caFile != "" {
		pool, err := tlsfiles.CertPool(f.caFile, "--ca-file")
		if err != nil {
			return nil, err
		}
		hc.Transport = &http.Transport{Proxy: http.ProxyFromEnvironment,
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	return &notify.SilenceClient{URL: server, Token: token, HTTP: hc}, nil
}

// silenceServer is the URL of the silence API a notifier with api serves,
// from this machine: a wildcard listen address is reached on loopback.
func silenceServer(a config.SilenceAPIConfig) string {
	host, port, err := net.SplitHostPort(a.Listen)
	if a.Listen == "" || err != nil {
		return "http://127.0.0.1:9095"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme := "http://"
	if a.TLS() {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, port)
}

// silenceAddFlags are the flags of `silence add`.
type silenceAddFlags struct {
	matchers         []string
	force            bool
	duration         time.Duration
	startsAt, endsAt string
	author, comment  string
}

// request is the silence the flags describe: --ends-at wins over
// --duration, and the author defaults to $USER.
func (a *silenceAddFlags) request() (notify.SilenceRequest, error) {
	if len(a.matchers) == 0 {
		return notify.SilenceRequest{}, errors.New("at least one --matcher is required")
	}
	author := a.author
	if author == "" {
		author = os.Getenv("USER")
	}
	req := notify.SilenceRequest{Matchers: a.matchers, CreatedBy: author, Comment: a.comment, Force: a.force}
	if a.startsAt != "" {
		t, err := time.Parse(time.RFC3339, a.startsAt)
		if err != nil {
			return notify.SilenceRequest{}, fmt.Errorf("--starts-at: %w", err)
		}
		req.StartsAt = &t
	}
	if a.endsAt == "" {
		req.Duration = a.duration.String()
		return req, nil
	}
	t, err := time.Parse(time.RFC3339, a.endsAt)
	if err != nil {
		return notify.SilenceRequest{}, fmt.Errorf("--ends-at: %w", err)
	}
	req.EndsAt = &t
	return req, nil
}

func newSilenceAddCommand(f *silenceFlags) *cobra.Command {
	var (
		a   silenceAddFlags
		out outputFormat
	)
	cmd := &cobra.Command{
		Use:   "add -m MATCHER [-m MATCHER...] --comment TEXT",
		Short: "Create a silence; prints its ID (-o json: the whole silence)",
		// Other tools' verbs for it: "silence create" suggests add.
		SuggestFor: []string{"create", "new"},
		Example: `  kubesift silence add -m rule_id=k8s-privileged-pod -m cluster=staging --duration 2h --comment "node debugging"
  kubesift silence add -m 'namespace=~"team-a-.*"' -m severity=low --ends-at 2026-12-24T08:00:00Z --author alice --comment "holiday freeze noise"
  kubesift silence add -m rule_id=k8s-exec-in-pod --comment "debugging" -o json | jq -r .ends_at`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := a.request()
			if err != nil {
				return err
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			s, err := c.Create(ctx, req)
			if err != nil {
				return err
			}
			if out.json() {
				return writeJSON(cmd.OutOrStdout(), s)
			}
			fmt.Fprintln(cmd.OutOrStdout(), s.ID)
			return nil
		},
	}
	out.bind(cmd, "text")
	fl := cmd.Flags()
	fl.StringArrayVarP(&a.matchers, "matcher", "m", nil, "label matcher (repeatable; all must match)")
	fl.DurationVar(&a.duration, "duration", 2*time.Hour, "how long the silence lasts (ignored with --ends-at)")
	fl.StringVar(&a.startsAt, "starts-at", "", "start time, RFC 3339 (default now)")
	fl.StringVar(&a.endsAt, "ends-at", "", "end time, RFC 3339")
	fl.StringVar(&a.author, "author", "", "who creates it (default $USER)")
	fl.StringVar(&a.comment, "comment", "", "why (required)")
	fl.BoolVar(&a.force, "force", false, "create the silence even if its matchers match every alert (refused otherwise)")
	return cmd
}

func newSilenceListCommand(f *silenceFlags) *cobra.Command {
	var (
		expired bool
		out     outputFormat
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List active and pending silences",
		Example: `  kubesift silence list
  kubesift silence list --expired -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			list, err := c.List(ctx, expired)
			if err != nil {
				return err
			}
			if out.json() {
				return writeJSON(cmd.OutOrStdout(), list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATUS\tENDS\tBY\tMATCHERS\tCOMMENT")
			for _, s := range list {
				ms := make([]string, len(s.Matchers))
				for i, m := range s.Matchers {
					ms[i] = m.String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Status, s.EndsAt.Format(time.RFC3339),
					s.CreatedBy, strings.Join(ms, " "), s.Comment)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&expired, "expired", false, "include silences that ended in the last 7 days")
	out.bind(cmd, "table")
	return cmd
}

func newSilenceExpireCommand(f *silenceFlags) *cobra.Command {
	return &cobra.Command{
		Use:        "expire ID...",
		SuggestFor: []string{"delete", "remove", "rm"},
		Short:      "End silences now",
		Example:    `  kubesift silence expire 3f2a9c0d5e6f47a8b9c0d1e2f3a4b5c6`,
		Args:       cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, ids []string) error {
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			var errs []error
			for _, id := range ids {
				ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
				err := c.Expire(ctx, id)
				cancel()
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", id, err))
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), "expired", id)
			}
			return errors.Join(errs...)
		},
	}
}
