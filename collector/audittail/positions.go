package audittail

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kubesift/kubesift/internal/atomicfile"
)

// Position is where the tail of one path stands: every line before Offset of
// the file with Inode has been published (or dead-lettered) durably.
type Position struct {
	Inode  uint64 `yaml:"inode" json:"inode"`
	Offset int64  `yaml:"offset" json:"offset"`
	// Line is the number of lines before Offset, for dead-letter locations.
	// 0 with Offset > 0 means unknown (counted again when needed).
	Line int64 `yaml:"line,omitempty" json:"line,omitempty"`
	// HeadLen and HeadHash fingerprint the file: FNV-64a of its first
	// HeadLen bytes (at most 1 KiB, never beyond Offset). Inode numbers are
	// reused as soon as a file is deleted, so on restart a file is only
	// taken for the saved one when its head matches too.
	HeadLen  int    `yaml:"head_len,omitempty" json:"head_len,omitempty"`
	HeadHash uint64 `yaml:"head_hash,omitempty" json:"head_hash,omitempty"`
}

// positionsDoc is the positions file, in the style of promtail's:
//
//	positions:
//	  /var/log/kubernetes/audit/audit.log: {inode: 1311, offset: 52301, line: 40}
//
// JSON is read too (it is YAML).
type positionsDoc struct {
	Positions map[string]Position `yaml:"positions" json:"positions"`
}

// parsePositions reads a positions file. Unknown keys are ignored (a newer
// version may add some); impossible values are errors.
func parsePositions(data []byte) (map[string]Position, error) {
	var doc positionsDoc
	if len(bytes.TrimSpace(data)) > 0 {
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return nil, err
		}
	}
	out := make(map[string]Position, len(doc.Positions))
	for p, pos := range doc.Positions {
		switch {
		case p == "":
			return nil, errors.New("positions: empty path")
		case pos.Offset < 0:
			return nil, fmt.Errorf("positions: %s: negative offset %d", p, pos.Offset)
		case pos.Line < 0:
			return nil, fmt.Errorf("positions: %s: negative line %d", p, pos.Line)
		case pos.Line > pos.Offset:
			return nil, fmt.Errorf("positions: %s: line %d beyond offset %d", p, pos.Line, pos.Offset)
		case pos.HeadLen < 0 || int64(pos.HeadLen) > pos.Offset || pos.HeadLen > headMax:
			return nil, fmt.Errorf("positions: %s: head_len %d outside 0..min(offset, %d)", p, pos.HeadLen, headMax)
		}
		out[p] = pos
	}
	return out, nil
}

// encodePositions renders the positions file, paths sorted.
func encodePositions(m map[string]Position) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# kubesift audit tail positions: per path, the inode and byte offset up to which\n# records are durable. Written by atomic rename; safe to delete (then start_at applies).\n")
	if len(m) == 0 {
		b.WriteString("positions: {}\n")
		return b.Bytes(), nil
	}
	// Build the mapping node by hand so the order is stable (sorted paths).
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	inner := &yaml.Node{Kind: yaml.MappingNode}
	for _, k := range keys {
		var v yaml.Node
		if err := v.Encode(m[k]); err != nil {
			return nil, err
		}
		v.Style = yaml.FlowStyle
		inner.Content = append(inner.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k, Style: yaml.DoubleQuotedStyle}, &v)
	}
	root := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: "positions"}, inner}}
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// positionStore is the in-memory positions map the followers update after
// each durable batch, and the file it is persisted to.
type positionStore struct {
	file string

	mu    sync.Mutex
	m     map[string]Position
	dirty bool
	wmu   sync.Mutex // serialises writers of the file
}

// loadPositions reads the positions file. A missing file is a first run
// (found false). A file that cannot be parsed is moved aside to
// <file>.corrupt-<unix time> and reported through corrupt, so the caller
// can re-read from the beginning rather than skip data.
func loadPositions(file string) (s *positionStore, found bool, corrupt error, err error) {
	s = &positionStore{file: file, m: map[string]Position{}}
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return s, false, nil, nil
	}
	if err != nil {
		return nil, false, nil, fmt.Errorf("positions file %s: %w", file, err)
	}
	m, perr := parsePositions(data)
	if perr != nil {
		aside := fmt.Sprintf("%s.corrupt-%d", file, time.Now().Unix())
		if rerr := os.Rename(file, aside); rerr != nil {
			return nil, false, nil, fmt.Errorf("positions file %s is corrupt (%v) and could not be moved aside: %w", file, perr, rerr)
		}
		return s, false, fmt.Errorf("positions file %s: %w (moved to %s)", file, perr, aside), nil
	}
	s.m = m
	return s, true, nil, nil
}

func (s *positionStore) get(path string) (Position, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.m[path]
	return p, ok
}

func (s *positionStore) set(path string, p Position) {
	s.mu.Lock()
	if s.m[path] != p {
		s.m[path] = p
		s.dirty = true
	}
	s.mu.Unlock()
}

func (s *positionStore) snapshot() map[string]Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Position, len(s.m))
	for k, v := range s.m {
		out[k] = v
	}
	return out
}

// flush writes the file if anything changed since the last write (or always
// when force). wrote reports whether a write happened.
func (s *positionStore) flush(force bool) (wrote bool, err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if !s.dirty && !force {
		s.mu.Unlock()
		return false, nil
	}
	m := make(map[string]Position, len(s.m))
	for k, v := range s.m {
		m[k] = v
	}
	s.dirty = false
	s.mu.Unlock()
	data, err := encodePositions(m)
	if err == nil {
		err = atomicfile.WriteFile(s.file, data)
	}
	if err != nil {
		s.mu.Lock()
		s.dirty = true // try again next time
		s.mu.Unlock()
		return false, fmt.Errorf("write positions file %s: %w", s.file, err)
	}
	return true, nil
}
