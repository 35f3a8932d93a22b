package rules

import (
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kubesift/kubesift/internal/netorigin"
	"github.com/kubesift/kubesift/record"
)

func TestSourceEnv(t *testing.T) {
	pub := netip.MustParseAddr("203.0.113.9")
	for _, tc := range []struct {
		name   string
		ips    []string
		origin netorigin.Origin
		want   SourceEnv
	}{
		{"no address", nil, netorigin.Origin{}, SourceEnv{}},
		{"not enriched: the class alone", []string{"203.0.113.9"}, netorigin.Origin{},
			SourceEnv{IP: "203.0.113.9", Class: "public", Network: "203.0.113.0/24"}},
		{"not enriched: a forged forwarded entry from the internet", []string{"10.0.0.1", "198.51.100.2"}, netorigin.Origin{},
			SourceEnv{IP: "198.51.100.2", Class: "public", Network: "198.51.100.0/24"}},
		{"not enriched: private has no network", []string{"10.0.0.1"}, netorigin.Origin{},
			SourceEnv{IP: "10.0.0.1", Class: "private"}},
		{"not enriched: IPv6 /48", []string{"2001:db8:1:2::5"}, netorigin.Origin{},
			SourceEnv{IP: "2001:db8:1:2::5", Class: "public", Network: "2001:db8:1::/48"}},
		{"enriched: lists, geo and AS", []string{"203.0.113.9"},
			netorigin.Origin{IP: pub, Class: netorigin.ClassPublic, Lists: []string{"ioc"},
				Geo: netorigin.Geo{ContinentCode: "EU", CountryISOCode: "NL", CountryName: "Netherlands", RegionName: "North Holland", CityName: "Amsterdam"},
				AS:  netorigin.AS{Number: 64500, Organization: "Example"}},
			SourceEnv{IP: "203.0.113.9", Class: "public", Lists: []string{"ioc"}, Network: "AS64500",
				Geo: SourceGeo{ContinentCode: "EU", CountryISOCode: "NL", CountryName: "Netherlands", RegionName: "North Holland", CityName: "Amsterdam"},
				AS:  func() SourceAS { var a SourceAS; a.Number, a.Organization.Name = 64500, "Example"; return a }()}},
		{"enriched: the processor's cluster class wins", []string{"10.244.0.3"},
			netorigin.Origin{IP: netip.MustParseAddr("10.244.0.3"), Class: netorigin.ClassCluster},
			SourceEnv{IP: "10.244.0.3", Class: "cluster"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &record.Record{Audit: &auditv1.Event{SourceIPs: tc.ips}, Origin: tc.origin}
			if got := newSourceEnv(r, new(originOf(r))); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestSourceEnvReusesTheRecordsAddress: the source object of an audit
// record whose address is private (nearly all of them) allocates nothing.
func TestSourceEnvReusesTheRecordsAddress(t *testing.T) {
	r := &record.Record{Audit: &auditv1.Event{SourceIPs: []string{"127.0.0.1"}}}
	r.Origin = (*netorigin.Resolver)(nil).LookupSources(r.Audit.SourceIPs)
	if n := testing.AllocsPerRun(100, func() { o := originOf(r); _ = newSourceEnv(r, &o) }); n != 0 {
		t.Errorf("newSourceEnv allocates %v times", n)
	}
}

// networkRuleIDs are the rules of rules/builtin/70-network.yaml.
var networkRuleIDs = map[string]bool{
	"system-identity-from-public-address": true, "anonymous-request-from-public-address": true,
	"scanner-request-from-public-address": true, "public-source-denied-burst": true,
	"request-from-ioc-address": true, "user-from-new-network": true,
}

// TestNetworkRulesOnTheRecordedCorpus: the network rules raise nothing on
// the benign recording of the real API server (rules/testdata), as
// recorded (loopback) and as if it had come from a public node or
// load-balancer address listed in cluster_cidrs, directly or forwarding
// pod addresses. From an unlisted public address the same records do
// alert, so the quiet comes from the classification, not from rules that
// cannot fire.
func TestNetworkRulesOnTheRecordedCorpus(t *testing.T) {
	var recs []*record.Record
	for _, l := range benchCorpus(t) {
		if r := decodeLine(t, l); r != nil && r.Audit != nil {
			recs = append(recs, r)
		}
	}
	cluster, err := netorigin.New(netorigin.Options{ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/28")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ips  []string // the records' sourceIPs; nil keeps the recorded ones
		res  *netorigin.Resolver
		want []string // network rules that must fire; no other may
	}{
		{name: "as recorded"},
		{name: "listed public node address", ips: []string{"198.51.100.7"}, res: cluster},
		{name: "pods behind a listed load balancer", ips: []string{"10.244.1.5", "198.51.100.7"}, res: cluster},
		{name: "unlisted public address", ips: []string{"198.51.100.7"},
			want: []string{"public-source-denied-burst", "system-identity-from-public-address", "user-from-new-network"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng, err := New(LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, r := range recs {
				ips := r.Audit.SourceIPs
				if tc.ips != nil {
					r.Audit.SourceIPs = tc.ips
				}
				r.Origin = tc.res.LookupSources(r.Audit.SourceIPs)
				for _, a := range eng.Eval(r) {
					if networkRuleIDs[a.RuleID] {
						got[a.RuleID]++
					}
					// Every alert names its source, whether or not its
					// rule read the source object.
					if len(r.Audit.SourceIPs) > 0 && a.SourceIP == "" {
						t.Errorf("%s: alert without source IP (record from %v)", a.RuleID, r.Audit.SourceIPs)
					}
				}
				r.Audit.SourceIPs, r.Origin = ips, netorigin.Origin{}
			}
			if ids := slices.Sorted(maps.Keys(got)); !slices.Equal(ids, tc.want) {
				t.Errorf("network rules fired %v over %d records, want %v", got, len(recs), tc.want)
			}
		})
	}
}

// BenchmarkNetworkRules is rules only on the recorded corpus, with the
// built-in pack as shipped beside the pack without its network rules
// (70-network.yaml disabled by an override), in the same run: the cost
// per record of the source object and of six rules that run on every
// audit record.
func BenchmarkNetworkRules(b *testing.B) {
	dir := b.TempDir()
	var off strings.Builder
	off.WriteString("overrides:\n")
	for _, id := range slices.Sorted(maps.Keys(networkRuleIDs)) {
		off.WriteString("  - {rule: " + id + ", enabled: false}\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "off.yaml"), []byte(off.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	lines := benchCorpus(b)
	recs := make([]*record.Record, len(lines))
	for i, l := range lines {
		recs[i] = decodeLine(b, l)
	}
	for _, bc := range []struct {
		name string
		opts LoadOptions
	}{{"pack", LoadOptions{}}, {"baseline-without-network-rules", LoadOptions{Dirs: []string{dir}}}} {
		b.Run(bc.name, func(b *testing.B) {
			e, err := New(bc.opts)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.Eval(recs[i%len(recs)])
			}
			reportRate(b)
		})
	}
}
