package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/testenv"
)

func TestNetworkConfig(t *testing.T) {
	c, err := Parse([]byte(`processor:
  network:
    cluster_cidrs: [10.96.0.0/12, "fd00::/64", 192.0.2.7]
    lists:
      - {name: ioc, files: [/etc/kubesift/ioc.txt, /etc/kubesift/ioc-extra.txt]}
      - {name: corp-egress, files: [/etc/kubesift/corp.txt], reload_interval: 0s}
    geoip: {city_db: /geo/city.mmdb, asn_db: /geo/asn.mmdb}
`), "p.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	n := c.Processor.Network
	if n.Lists[0].ReloadInterval != time.Minute || n.Lists[1].ReloadInterval != 0 {
		t.Errorf("reload intervals %v %v, want the 1m default and the 0 given", n.Lists[0].ReloadInterval, n.Lists[1].ReloadInterval)
	}
	o := n.Options()
	want := []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("fd00::/64"), netip.MustParsePrefix("192.0.2.7/32")}
	if !slices.Equal(o.ClusterCIDRs, want) || len(o.Lists) != 2 || o.Lists[0].Name != "ioc" || len(o.Lists[0].Files) != 2 ||
		o.CityDB != "/geo/city.mmdb" || o.ASNDB != "/geo/asn.mmdb" {
		t.Errorf("options %+v", o)
	}
	var files []string
	for _, f := range c.Files() {
		files = append(files, f.Field)
	}
	for _, f := range []string{"processor.network.lists[0].files[1]", "processor.network.geoip.city_db", "processor.network.geoip.asn_db"} {
		if !slices.Contains(files, f) {
			t.Errorf("Files() lacks %s: %v", f, files)
		}
	}
	if d := Default(); len(d.Processor.Network.ClusterCIDRs)+len(d.Processor.Network.Lists) != 0 {
		t.Errorf("default network section %+v, want empty", d.Processor.Network)
	}
}

func TestNetworkValidation(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"bad CIDR", "processor:\n  network:\n    cluster_cidrs: [10.96.0.0/33]\n", `processor.network.cluster_cidrs[0]: "10.96.0.0/33" is not a CIDR or IP address`},
		{"no name", "processor:\n  network:\n    lists: [{files: [a]}]\n", `processor.network.lists[0].name: "" must be`},
		{"name with a space", "processor:\n  network:\n    lists: [{name: my list, files: [a]}]\n", `processor.network.lists[0].name: "my list" must be`},
		{"name twice", "processor:\n  network:\n    lists: [{name: ioc, files: [a]}, {name: ioc, files: [b]}]\n", `processor.network.lists[1].name: "ioc" is listed twice`},
		{"no files", "processor:\n  network:\n    lists: [{name: ioc}]\n", "processor.network.lists[0].files: must name at least one file"},
		{"empty file", "processor:\n  network:\n    lists: [{name: ioc, files: [a, \"\"]}]\n", "processor.network.lists[0].files[1]: must not be empty"},
		{"negative reload", "processor:\n  network:\n    lists: [{name: ioc, files: [a], reload_interval: -1s}]\n", "processor.network.lists[0].reload_interval: must not be negative"},
		{"unknown key", "processor:\n  network:\n    geoip: {country_db: x}\n", "processor.network.geoip.country_db: unknown key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "p.yaml", func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestCheckNetworkFiles: config validate parses every list (naming field,
// file and line) and opens the databases, checking their type.
func TestCheckNetworkFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("ioc.txt", "# feed\n203.0.113.7\n")
	bad := write("bad.txt", "203.0.113.7\n203.0.113.0/40\n")
	city, asn := filepath.Join(dir, "city.mmdb"), filepath.Join(dir, "asn.mmdb")
	testenv.WriteMMDB(t, city, "GeoLite2-City", map[string]map[string]any{"203.0.113.0/24": {"country": map[string]any{"iso_code": "NL"}}})
	testenv.WriteMMDB(t, asn, "GeoLite2-ASN", map[string]map[string]any{"203.0.113.0/24": {"autonomous_system_number": 64500}})
	list := func(files ...string) []NetworkListConfig { return []NetworkListConfig{{Name: "ioc", Files: files}} }
	for _, tc := range []struct {
		name string
		set  func(n *ProcessorNetworkConfig)
		want string
	}{
		{"all good", func(n *ProcessorNetworkConfig) {
			n.Lists = list(good)
			n.GeoIP = GeoIPConfig{CityDB: city, ASNDB: asn}
		}, ""},
		{"bad line", func(n *ProcessorNetworkConfig) { n.Lists = list(good, bad) },
			"processor.network.lists[0].files[1]: " + bad + `:2: "203.0.113.0/40" is not a CIDR or IP address`},
		{"missing list", func(n *ProcessorNetworkConfig) { n.Lists = list(filepath.Join(dir, "none.txt")) },
			"processor.network.lists[0].files[0]: open " + filepath.Join(dir, "none.txt")},
		{"swapped databases", func(n *ProcessorNetworkConfig) { n.GeoIP = GeoIPConfig{CityDB: asn} },
			"processor.network.geoip.city_db: " + asn + `: database type "GeoLite2-ASN", want a City or Country database`},
		{"list as database", func(n *ProcessorNetworkConfig) { n.GeoIP = GeoIPConfig{ASNDB: good} },
			"processor.network.geoip.asn_db: " + good},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.set(&c.Processor.Network)
			err := c.CheckFiles()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("CheckFiles = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("CheckFiles = %v, want %q", err, tc.want)
			}
		})
	}
}
