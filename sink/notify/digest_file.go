package notify

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"

	"github.com/kubesift/kubesift/internal/atomicfile"
)

// DigestFile is the report file of the digest (notify.digest.dir): each
// digest written as DIR/CLUSTER/DAY.html (the self-contained page) and
// DAY.json (the figures). Only the replica that sends a digest writes it,
// so with several replicas DIR is a volume they share. A digest sent
// again (a takeover) replaces its files whole.
type DigestFile struct {
	dir string
}

// NewDigestFile writes digests under dir.
func NewDigestFile(dir string) *DigestFile { return &DigestFile{dir: dir} }

// plainCluster is a cluster name that is safe as a directory name as it
// is: no separator, no dot-only name, nothing a shell or a URL mangles.
var plainCluster = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// Dir is the directory of cluster's files: its name, or a hash of it when
// the name could not be a plain directory name (cluster names come from
// configuration and records, and must not reach outside dir).
func (f *DigestFile) Dir(cluster string) string {
	if !plainCluster.MatchString(cluster) {
		cluster = hashedName(cluster)
	}
	return filepath.Join(f.dir, cluster)
}

// NotifyDigest implements DigestNotifier. A failed write is retried: a
// full disk or a remounting volume may clear.
func (f *DigestFile) NotifyDigest(_ context.Context, d *Digest) (bool, error) {
	dir := f.Dir(d.Cluster)
	for _, part := range []struct {
		ext  string
		data []byte
	}{{".html", []byte(d.HTML)}, {".json", d.Data}} {
		if err := atomicfile.WriteFile(filepath.Join(dir, d.Day+part.ext), part.data); err != nil {
			return true, fmt.Errorf("digest file: %w", err)
		}
	}
	return false, nil
}
