package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set at build time by `make build` (and the Dockerfile):
//
//	-ldflags "-X main.version=v1.2.3 -X main.commit=0123abcd -X main.date=2026-12-07T01:00:00Z"
//
// A binary built by plain `go build` or `go install` leaves them empty and
// takes what the toolchain embedded instead (buildVersion).
var version, commit, date string

// versionInfo is what `kubesift version` and `kubesift --version` print.
type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Date      string `json:"date"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

func (v versionInfo) String() string {
	return fmt.Sprintf("kubesift %s (commit %s, built %s, %s %s)", v.Version, v.Commit, v.Date, v.GoVersion, v.Platform)
}

// currentVersion is the version of this binary.
func currentVersion() versionInfo {
	bi, _ := debug.ReadBuildInfo()
	return buildVersion(versionInfo{Version: version, Commit: commit, Date: date}, bi)
}

// buildVersion completes what -ldflags set (ld) from the build information
// the Go toolchain embeds: go build and go install in a git checkout record
// the module version, vcs.revision, vcs.time and vcs.modified (shown as a
// "-dirty" commit). go run and test binaries record no VCS stamp, so what
// neither source has says "unknown" rather than a guess.
func buildVersion(ld versionInfo, bi *debug.BuildInfo) versionInfo {
	v := ld
	v.GoVersion, v.Platform = runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH
	var revision, modified, vcsTime string
	if bi != nil {
		if bi.GoVersion != "" {
			v.GoVersion = bi.GoVersion
		}
		if v.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value
			case "vcs.time":
				vcsTime = s.Value
			}
		}
	}
	if v.Version == "" {
		v.Version = "devel"
	}
	if v.Commit == "" && revision != "" {
		v.Commit = revision
		if modified == "true" {
			v.Commit += "-dirty"
		}
	}
	if v.Date == "" {
		v.Date = vcsTime
	}
	if v.Commit == "" {
		v.Commit = "unknown"
	}
	if v.Date == "" {
		v.Date = "unknown"
	}
	return v
}

func newVersionCommand() *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and build date of kubesift",
		Long: `version prints the version, the git commit (with -dirty when the tree had changes) and the
build date that make build stamps with -ldflags; a binary from go build or go install reports
the module version and the commit and time its VCS stamp records. kubesift --version prints
the same line.`,
		Example: `  kubesift version
  kubesift version -o json | jq -r .commit
  kubesift --version`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := currentVersion()
			if out.json() {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), v)
			return err
		},
	}
	out.bind(cmd, "text")
	return cmd
}
