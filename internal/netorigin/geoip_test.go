package netorigin

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubesift/kubesift/internal/testenv"
)

// geoFixture writes a City and an ASN database covering 203.0.113.0/24
// (Amsterdam, AS64500) and 2001:db8::/32 (a country only).
func geoFixture(t testing.TB) (city, asn string) {
	dir := t.TempDir()
	city, asn = filepath.Join(dir, "city.mmdb"), filepath.Join(dir, "asn.mmdb")
	name := func(s string) map[string]any { return map[string]any{"en": s, "de": s + "-de"} }
	testenv.WriteMMDB(t, city, "GeoLite2-City", map[string]map[string]any{
		"203.0.113.0/24": {
			"continent":    map[string]any{"code": "EU", "names": name("Europe")},
			"country":      map[string]any{"iso_code": "NL", "names": name("Netherlands")},
			"subdivisions": []any{map[string]any{"iso_code": "NH", "names": name("North Holland")}},
			"city":         map[string]any{"names": name("Amsterdam")},
			"location":     map[string]any{"latitude": 52.37, "longitude": 4.89},
		},
		"2001:db8::/32": {"country": map[string]any{"iso_code": "DE", "names": name("Germany")}},
	})
	testenv.WriteMMDB(t, asn, "GeoLite2-ASN", map[string]map[string]any{
		"203.0.113.0/24": {"autonomous_system_number": uint32(64500), "autonomous_system_organization": "Example Hosting"},
	})
	return city, asn
}

func TestGeoAndAS(t *testing.T) {
	city, asn := geoFixture(t)
	r, err := New(Options{CityDB: city, ASNDB: asn})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, tc := range []struct {
		ip  string
		geo Geo
		as  AS
	}{
		{"203.0.113.9", Geo{ContinentCode: "EU", ContinentName: "Europe", CountryISOCode: "NL", CountryName: "Netherlands",
			RegionISOCode: "NL-NH", RegionName: "North Holland", CityName: "Amsterdam", Lat: 52.37, Lon: 4.89, HasLocation: true},
			AS{64500, "Example Hosting"}},
		{"2001:db8::1", Geo{CountryISOCode: "DE", CountryName: "Germany"}, AS{}},
		{"198.51.100.1", Geo{}, AS{}}, // in neither database
		{"10.0.0.1", Geo{}, AS{}},     // private: not looked up
	} {
		t.Run(tc.ip, func(t *testing.T) {
			o := r.Lookup(tc.ip)
			if o.Geo != tc.geo || o.AS != tc.as {
				t.Errorf("geo %+v as %+v, want %+v %+v", o.Geo, o.AS, tc.geo, tc.as)
			}
		})
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if o := r.Lookup("203.0.113.9"); o.AS != (AS{}) || o.Class != ClassPublic {
		t.Errorf("after Close: %+v, want the class and no AS", o)
	}
}

func TestOpenDBChecksTheType(t *testing.T) {
	city, asn := geoFixture(t)
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"asn as city", Options{CityDB: asn}, `database type "GeoLite2-ASN", want a City or Country database`},
		{"city as asn", Options{ASNDB: city}, `database type "GeoLite2-City", want a ASN database`},
		{"missing", Options{ASNDB: filepath.Join(t.TempDir(), "none.mmdb")}, "none.mmdb"},
		{"not a database", Options{CityDB: "geoip_test.go"}, "geoip_test.go"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// BenchmarkLookupGeo is a lookup with both databases, beside the lookup
// without them, measured in the same run.
func BenchmarkLookupGeo(b *testing.B) {
	city, asn := geoFixture(b)
	with, err := New(Options{CityDB: city, ASNDB: asn})
	if err != nil {
		b.Fatal(err)
	}
	defer with.Close()
	without, _ := New(Options{})
	for _, bc := range []struct {
		name string
		r    *Resolver
	}{{"geo+asn", with}, {"baseline-class-only", without}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = bc.r.Lookup("203.0.113.9")
			}
		})
	}
}
