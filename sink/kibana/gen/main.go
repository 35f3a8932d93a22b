// Command gen writes the saved objects of the default configuration to
// deployments/kibana/kubesift.ndjson (go generate ./sink/kibana, or make
// kibana). TestCommittedFileIsCurrent fails while the committed file differs.
package main

import (
	"fmt"
	"os"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/sink/kibana"
)

func main() {
	out := "deployments/kibana/kubesift.ndjson"
	if len(os.Args) > 1 {
		out = os.Args[1]
	}
	b, err := kibana.Generate(config.Default().Sink.Elasticsearch)
	if err == nil {
		err = os.WriteFile(out, b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kibana gen:", err)
		os.Exit(1)
	}
}
