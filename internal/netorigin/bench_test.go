package netorigin

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// benchResolver is a Resolver with two lists of n random IPv4 networks
// each (plus 203.0.113.0/24 on "ioc") and a few cluster networks.
func benchResolver(tb testing.TB, n int) *Resolver {
	tb.Helper()
	dir := tb.TempDir()
	rng := rand.New(rand.NewPCG(3, 4))
	var specs []ListSpec
	for _, name := range []string{"ioc", "tor"} {
		var b strings.Builder
		b.WriteString("203.0.113.0/24\n")
		for range n {
			fmt.Fprintf(&b, "%d.%d.%d.0/%d\n", 1+rng.IntN(200), rng.IntN(256), rng.IntN(256), 16+rng.IntN(17))
		}
		path := filepath.Join(dir, name+".txt")
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			tb.Fatal(err)
		}
		specs = append(specs, ListSpec{Name: name, Files: []string{path}})
	}
	r, err := New(Options{Lists: specs, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}})
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// BenchmarkLookup is the lookup of one address against two lists of 100k
// networks, beside the baseline of a linear scan of the same networks
// (what a rule with an in_cidr list of them does) measured in the same run.
func BenchmarkLookup(b *testing.B) {
	const n = 100000
	r := benchResolver(b, n)
	var prefixes []netip.Prefix
	for _, l := range r.loaded {
		prefixes = append(prefixes, l.prefixes...)
	}
	addrs := []netip.Addr{
		netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("8.8.8.8"),
		netip.MustParseAddr("10.96.0.1"), netip.MustParseAddr("2001:db8::1"),
	}
	b.Run("table", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			_ = r.LookupAddr(addrs[i&3])
			i++
		}
	})
	b.Run("baseline-linear-scan", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			a := addrs[i&3]
			for _, p := range prefixes {
				if p.Contains(a) {
					break
				}
			}
			i++
		}
	})
}

// BenchmarkBuild is the cost of one load (or reload) of the lists.
func BenchmarkBuild(b *testing.B) {
	r := benchResolver(b, 100000)
	b.ReportAllocs()
	for b.Loop() {
		if err := r.swap(); err != nil {
			b.Fatal(err)
		}
	}
}
