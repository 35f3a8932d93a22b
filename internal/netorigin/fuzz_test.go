package netorigin

import (
	"strings"
	"testing"
)

// FuzzParseList: any input is a list or an error naming its line; never a
// panic. Every network parsed is masked, unmapped, and holds the address
// its line named; the table built from them finds each network's first
// address.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{
		"203.0.113.7\n198.51.100.0/24 # c\n", "2001:db8::/32\n::ffff:1.2.3.0/120\n", "# only\n\n",
		"10.1.2.3/8", "fe80::1%eth0", "1.2.3.4/33", "\xff\xfe", "0.0.0.0/0\n::/0\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ps, err := ParseList("f", strings.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f:") {
				t.Fatalf("error %q does not name the file and line", err)
			}
			return
		}
		ms := make([]member, len(ps))
		for i, p := range ps {
			if p != p.Masked() || p.Addr().Is4In6() || !p.IsValid() {
				t.Fatalf("network %v is not masked, unmapped and valid", p)
			}
			ms[i] = member{p, 0}
		}
		tab, err := buildTable([]string{"l"}, ms)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if tab.lookup(p.Addr()) == nil {
				t.Fatalf("%v is not found in its own list", p)
			}
			if _, last := bounds(p); tab.lookup(addrOf(last, p.Addr().Is4())) == nil {
				t.Fatalf("the last address of %v is not found", p)
			}
		}
	})
}
