package netorigin

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
)

// maxLineBytes bounds one line of a list file; a longer line is an error
// naming it rather than a buffer that grows with the input.
const maxLineBytes = 4096

// ParseList reads a list of networks: one CIDR or address per line, with
// "#" starting a comment (whole-line or after the entry) and blank lines
// ignored. A CIDR with host bits set is taken as its network
// (10.1.2.3/8 is 10.0.0.0/8); IPv4-mapped IPv6 entries are IPv4. The error
// names name:line and the offending text (a list is not a secret, and the
// line is what the user must fix), quoted and cut to 64 bytes.
func ParseList(name string, r io.Reader) ([]netip.Prefix, error) {
	var out []netip.Prefix
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxLineBytes)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		p, err := ParseNetwork(text)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	return out, nil
}

// ParseFile is ParseList of a file, the error naming its path.
func ParseFile(path string) ([]netip.Prefix, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseList(path, f)
}

// ParseNetwork parses one CIDR or address (a host prefix), as ParseList
// reads a line and processor.network.cluster_cidrs an entry.
func ParseNetwork(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.IndexByte(s, '/') >= 0 {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or IP address", cut(s))
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or IP address", cut(s))
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			return netip.Prefix{}, fmt.Errorf("%q: an IPv4-mapped network must be /96 or longer", cut(s))
		}
		p = netip.PrefixFrom(a.Unmap(), bits)
	}
	return p.Masked(), nil
}

func cut(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
