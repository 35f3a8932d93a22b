package netorigin

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	r, err := New(Options{ClusterCIDRs: []netip.Prefix{
		netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("fd00:10::/64"), netip.MustParsePrefix("198.51.100.0/28"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ip   string
		want Class
	}{
		{"", ClassNone},
		{"not-an-ip", ClassNone},
		{"127.0.0.1", ClassLoopback},
		{"::1", ClassLoopback},
		{"::ffff:127.0.0.1", ClassLoopback},
		{"169.254.169.254", ClassLinkLocal},
		{"fe80::1", ClassLinkLocal},
		{"fe80::1%eth0", ClassLinkLocal},
		{"10.96.0.1", ClassCluster},
		{"10.111.255.255", ClassCluster},
		{"10.112.0.0", ClassPrivate},
		{"fd00:10::5", ClassCluster},
		{"fd00:11::5", ClassPrivate},
		{"198.51.100.15", ClassCluster}, // cluster networks need not be private
		{"198.51.100.16", ClassPublic},
		{"192.168.99.1", ClassPrivate},
		{"172.16.0.1", ClassPrivate},
		{"172.32.0.1", ClassPublic},
		{"100.64.0.1", ClassPrivate},
		{"100.128.0.1", ClassPublic},
		{"0.0.0.0", ClassOther},
		{"0.1.2.3", ClassOther},
		{"::", ClassOther},
		{"224.0.0.1", ClassOther},
		{"ff02::1", ClassOther},
		{"240.0.0.1", ClassOther},
		{"255.255.255.255", ClassOther},
		{"8.8.8.8", ClassPublic},
		{"2001:4860:4860::8888", ClassPublic},
		{"::ffff:8.8.8.8", ClassPublic},
	} {
		t.Run(tc.ip, func(t *testing.T) {
			o := r.Lookup(tc.ip)
			if o.Class != tc.want {
				t.Errorf("class %q, want %q", o.Class, tc.want)
			}
			if o.Known() != (tc.want != ClassNone) {
				t.Errorf("Known() = %v for class %q", o.Known(), o.Class)
			}
			if o.Known() && (o.IP.Is4In6() || o.IP.Zone() != "") {
				t.Errorf("IP %v is not unmapped and zone-free", o.IP)
			}
		})
	}
	// Without a Resolver the cluster networks are unknown: private stays
	// private, nothing else changes.
	var none *Resolver
	if got := none.Lookup("10.96.0.1").Class; got != ClassPrivate {
		t.Errorf("nil Resolver: 10.96.0.1 is %q, want private", got)
	}
}

func TestParseList(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
		err      string
	}{
		{name: "empty", in: ""},
		{name: "comments and blanks", in: "# IOC feed\n\n  \n# end\n"},
		{name: "entries", in: "203.0.113.7\n198.51.100.0/24 # scanner farm\n  2001:db8::/32\n\t192.0.2.1/32\n",
			want: []string{"203.0.113.7/32", "198.51.100.0/24", "2001:db8::/32", "192.0.2.1/32"}},
		{name: "host bits are masked", in: "10.1.2.3/8\n", want: []string{"10.0.0.0/8"}},
		{name: "mapped IPv4 is IPv4", in: "::ffff:203.0.113.0/120\n::ffff:203.0.113.9\n", want: []string{"203.0.113.0/24", "203.0.113.9/32"}},
		{name: "windows line endings", in: "203.0.113.7\r\n", want: []string{"203.0.113.7/32"}},
		{name: "bad address names the line", in: "203.0.113.7\n# ok\n203.0.113.300\n", err: `ioc.txt:3: "203.0.113.300" is not a CIDR or IP address`},
		{name: "bad prefix length", in: "203.0.113.0/33\n", err: `ioc.txt:1: "203.0.113.0/33"`},
		{name: "hostname", in: "evil.example.com\n", err: `ioc.txt:1: "evil.example.com"`},
		{name: "two entries on a line", in: "203.0.113.7 203.0.113.8\n", err: `ioc.txt:1: "203.0.113.7 203.0.113.8"`},
		{name: "zone", in: "fe80::1%eth0\n", err: `ioc.txt:1:`},
		{name: "long line is cut", in: strings.Repeat("x", 100) + "\n", err: `ioc.txt:1: "` + strings.Repeat("x", 64) + `…"`},
		{name: "over-long line", in: "1.2.3.4\n" + strings.Repeat("1", maxLineBytes+1) + "\n", err: "ioc.txt:2: bufio.Scanner: token too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseList("ioc.txt", strings.NewReader(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, p := range got {
				s = append(s, p.String())
			}
			if !slices.Equal(s, tc.want) {
				t.Errorf("got %v, want %v", s, tc.want)
			}
		})
	}
}

// TestTableMatchesLinearScan holds the range table against the obvious
// answer (every list whose prefixes contain the address) on random nested
// and overlapping networks of several lists, at the edges of every network.
func TestTableMatchesLinearScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"ioc", "tor", "corp", "vpn"}
	var ms []member
	randPrefix := func() netip.Prefix {
		if rng.IntN(3) == 0 {
			var b [16]byte
			b[0], b[1], b[2] = 0x20, 0x01, byte(rng.IntN(4))
			return netip.PrefixFrom(netip.AddrFrom16(b), 24+rng.IntN(105)).Masked()
		}
		a := netip.AddrFrom4([4]byte{byte(10 + rng.IntN(3)), byte(rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256))})
		return netip.PrefixFrom(a, 8+rng.IntN(25)).Masked()
	}
	for range 400 {
		ms = append(ms, member{randPrefix(), rng.IntN(len(names))})
	}
	// The full address space and the last address exercise the edges.
	ms = append(ms, member{netip.MustParsePrefix("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"), 0})
	tab, err := buildTable(names, ms)
	if err != nil {
		t.Fatal(err)
	}
	want := func(a netip.Addr) []string {
		var out []string
		for i, n := range names {
			for _, m := range ms {
				if m.set == i && m.prefix.Contains(a) {
					out = append(out, n)
					break
				}
			}
		}
		slices.Sort(out)
		return out
	}
	var probes []netip.Addr
	for _, m := range ms {
		first, last := bounds(m.prefix)
		for _, k := range []u128{first, last, first.prev(), nextOr(last)} {
			probes = append(probes, addrOf(k, m.prefix.Addr().Is4()))
		}
		probes = append(probes, randPrefix().Addr())
	}
	for _, a := range probes {
		if got, w := tab.lookup(a), want(a); !slices.Equal(got, w) {
			t.Fatalf("lookup(%v) = %v, want %v", a, got, w)
		}
	}
	if got := tab.lookup(netip.MustParseAddr("192.0.2.1")); got != nil {
		t.Errorf("an unlisted address is on %v", got)
	}
	var empty *table
	if got := empty.lookup(netip.MustParseAddr("192.0.2.1")); got != nil {
		t.Errorf("nil table: %v", got)
	}
}

// nextOr is k+1, or k when k is the last address.
func nextOr(k u128) u128 {
	if n, ok := k.next(); ok {
		return n
	}
	return k
}

// addrOf is the address of k, unmapped when the network was IPv4.
func addrOf(k u128, v4 bool) netip.Addr {
	var b [16]byte
	for i := range 8 {
		b[i] = byte(k.hi >> (56 - 8*i))
		b[8+i] = byte(k.lo >> (56 - 8*i))
	}
	a := netip.AddrFrom16(b)
	if v4 {
		return a.Unmap()
	}
	return a
}

func TestTooManyLists(t *testing.T) {
	specs := make([]ListSpec, MaxLists+1)
	for i := range specs {
		specs[i].Name = strings.Repeat("l", i+1)
	}
	if _, err := New(Options{Lists: specs}); err == nil || !strings.Contains(err.Error(), "at most 64") {
		t.Errorf("error %v, want at most 64", err)
	}
}

func TestLookupAllocatesNothing(t *testing.T) {
	r := benchResolver(t, 10000)
	a := netip.MustParseAddr("203.0.113.9")
	if n := testing.AllocsPerRun(1000, func() { _ = r.LookupAddr(a) }); n != 0 {
		t.Errorf("LookupAddr allocates %v times", n)
	}
	if n := testing.AllocsPerRun(1000, func() { _ = r.Lookup("203.0.113.9") }); n != 0 {
		t.Errorf("Lookup allocates %v times", n)
	}
}

// TestLookupSources: the client of the forwarded chain is the origin
// unless the connection itself came from a public address, whose
// forwarded entries anyone can write.
func TestLookupSources(t *testing.T) {
	r, err := New(Options{ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		ips   []string
		ip    string
		class Class
	}{
		{"none", nil, "", ClassNone},
		{"one", []string{"203.0.113.9"}, "203.0.113.9", ClassPublic},
		{"behind an internal proxy", []string{"203.0.113.9", "10.244.1.5"}, "203.0.113.9", ClassPublic},
		{"private client behind an internal proxy", []string{"192.168.1.4", "10.0.0.2"}, "192.168.1.4", ClassPrivate},
		{"spoofed header from the internet", []string{"10.0.0.1", "198.51.100.20"}, "198.51.100.20", ClassPublic},
		{"public proxy chain", []string{"203.0.113.9", "198.51.100.20"}, "198.51.100.20", ClassPublic},
		{"unparseable client", []string{"unknown", "10.0.0.2"}, "10.0.0.2", ClassPrivate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := r.LookupSources(tc.ips)
			ip := ""
			if o.Known() {
				ip = o.IP.String()
			}
			if ip != tc.ip || o.Class != tc.class {
				t.Errorf("origin %s %q, want %s %q", ip, o.Class, tc.ip, tc.class)
			}
		})
	}
}

func TestIPString(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		ips  []string
		want string
	}{
		{"10.0.0.1", []string{"10.0.0.1"}, "10.0.0.1"},
		{"203.0.113.9", []string{"10.0.0.1", "203.0.113.9"}, "203.0.113.9"},
		{"2001:db8::1", []string{"2001:DB8::1"}, "2001:db8::1"},
		{"10.0.0.1", nil, "10.0.0.1"},
	} {
		o := Origin{IP: netip.MustParseAddr(tc.ip)}
		if got := o.IPString(tc.ips); got != tc.want {
			t.Errorf("IPString(%q) of %s = %q, want %q", tc.ips, tc.ip, got, tc.want)
		}
	}
	ips := []string{"10.0.0.1", "203.0.113.9"}
	o := Origin{IP: netip.MustParseAddr("203.0.113.9")}
	if n := testing.AllocsPerRun(100, func() { _ = o.IPString(ips) }); n != 0 {
		t.Errorf("IPString allocates %v times when the record holds the string", n)
	}
}
