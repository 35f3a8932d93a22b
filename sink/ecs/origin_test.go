package ecs

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"

	"github.com/kubesift/kubesift/internal/netorigin"
)

// TestOriginFields: the processor's origin of a record becomes source.ip,
// source.geo, source.as and kubesift.source, written by the append encoder
// exactly as by reflection, and every field is mapped.
func TestOriginFields(t *testing.T) {
	b := testBuilder(t)
	full := netorigin.Origin{IP: netip.MustParseAddr("203.0.113.9"), Class: netorigin.ClassPublic, Lists: []string{"ioc", "tor"},
		Geo: netorigin.Geo{ContinentCode: "EU", ContinentName: "Europe", CountryISOCode: "NL", CountryName: "Netherlands",
			RegionISOCode: "NL-NH", RegionName: "North Holland", CityName: "Amsterdam", Lat: 52.374, Lon: -4.8897, HasLocation: true},
		AS: netorigin.AS{Number: 64500, Organization: "Example \"Hosting\""}}
	for _, tc := range []struct {
		name   string
		ips    string
		origin netorigin.Origin
		want   map[string]any // source and kubesift.source of the document
	}{
		{"no origin: the first parseable address", `["bad","10.0.0.1"]`, netorigin.Origin{},
			map[string]any{"source": map[string]any{"ip": "10.0.0.1"}}},
		{"no origin: a public connection address wins, as in the rules' source.ip", `["10.0.0.1","203.0.113.9"]`, netorigin.Origin{},
			map[string]any{"source": map[string]any{"ip": "203.0.113.9"}}},
		{"no origin: written canonically", `["::ffff:10.0.0.1"]`, netorigin.Origin{},
			map[string]any{"source": map[string]any{"ip": "10.0.0.1"}}},
		{"class only", `["10.0.0.1"]`, netorigin.Origin{IP: netip.MustParseAddr("10.0.0.1"), Class: netorigin.ClassPrivate},
			map[string]any{"source": map[string]any{"ip": "10.0.0.1"}, "kubesift_source": map[string]any{"class": "private"}}},
		{"the origin is not the first address", `["10.0.0.1","203.0.113.9"]`, full,
			map[string]any{
				"source": map[string]any{"ip": "203.0.113.9",
					"geo": map[string]any{"continent_code": "EU", "continent_name": "Europe", "country_iso_code": "NL", "country_name": "Netherlands",
						"region_iso_code": "NL-NH", "region_name": "North Holland", "city_name": "Amsterdam",
						"location": map[string]any{"lat": 52.374, "lon": -4.8897}},
					"as": map[string]any{"number": float64(64500), "organization": map[string]any{"name": "Example \"Hosting\""}}},
				"kubesift_source": map[string]any{"class": "public", "lists": []any{"ioc", "tor"}}}},
		{"country without location, AS without organization", `["2001:db8::1"]`,
			netorigin.Origin{IP: netip.MustParseAddr("2001:db8::1"), Class: netorigin.ClassPublic,
				Geo: netorigin.Geo{CountryISOCode: "DE"}, AS: netorigin.AS{Number: 7}},
			map[string]any{"source": map[string]any{"ip": "2001:db8::1", "geo": map[string]any{"country_iso_code": "DE"}, "as": map[string]any{"number": float64(7)}},
				"kubesift_source": map[string]any{"class": "public"}}},
		{"tiny and huge coordinates in exponent notation", `["203.0.113.9"]`,
			netorigin.Origin{IP: netip.MustParseAddr("203.0.113.9"), Class: netorigin.ClassPublic, Geo: netorigin.Geo{Lat: 1e-9, Lon: -1.5e21, HasLocation: true}},
			map[string]any{"source": map[string]any{"ip": "203.0.113.9", "geo": map[string]any{"location": map[string]any{"lat": 1e-9, "lon": -1.5e21}}},
				"kubesift_source": map[string]any{"class": "public"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := decodeOne(t, `{"auditID":"o","stage":"ResponseComplete","verb":"get","sourceIPs":`+tc.ips+`}`)
			r.Origin = tc.origin
			sameAsReflection(t, b, r)
			d, err := b.Record(r)
			if err != nil {
				t.Fatal(err)
			}
			checkMapped(t, d.Body, MergeMappings(BaseMappings(), AuditMappings()))
			var doc struct {
				Source   any `json:"source"`
				Kubesift struct {
					Source any `json:"source"`
				} `json:"kubesift"`
			}
			if err := json.Unmarshal(d.Body, &doc); err != nil {
				t.Fatal(err)
			}
			got := map[string]any{"source": doc.Source}
			if doc.Kubesift.Source != nil {
				got["kubesift_source"] = doc.Kubesift.Source
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}
