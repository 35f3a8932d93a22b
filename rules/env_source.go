package rules

import (
	"net/netip"
	"strconv"

	"github.com/kubesift/kubesift/internal/netorigin"
	"github.com/kubesift/kubesift/record"
)

// SourceEnv is an audit rule's `source`: where the request came from
// (internal/netorigin). The names follow ECS source.* where ECS has one.
type SourceEnv struct {
	// IP is the origin address: sourceIPs' first entry, or the
	// connection's own address when that is public (netorigin
	// LookupSources); "" when none parses.
	IP string `expr:"ip"`
	// Class is loopback, link_local, cluster, private, other or public.
	Class string `expr:"class"`
	// Lists are the names of the processor.network.lists holding IP.
	Lists []string `expr:"lists"`
	// Network is what "the same network" means for new_term rules, for a
	// public address: "AS<number>" when the ASN database knows IP, else
	// its /24 (IPv4) or /48 (IPv6). Empty for the other classes, whose
	// networks are the cluster's own or nobody's.
	Network string    `expr:"network"`
	Geo     SourceGeo `expr:"geo"`
	AS      SourceAS  `expr:"as"`
}

// SourceGeo is source.geo (City/Country database).
type SourceGeo struct {
	ContinentCode  string `expr:"continent_code"`
	CountryISOCode string `expr:"country_iso_code"`
	CountryName    string `expr:"country_name"`
	RegionName     string `expr:"region_name"`
	CityName       string `expr:"city_name"`
}

// SourceAS is source.as (ASN database); Number is 0 when unknown.
type SourceAS struct {
	Number       int `expr:"number"`
	Organization struct {
		Name string `expr:"name"`
	} `expr:"organization"`
}

// originOf is where an audit record came from: the processor's enrichment
// (r.Origin) when it has one, else the classes alone (rule fixtures and
// `kubesift rules eval` run without the processor's lists and databases).
func originOf(r *record.Record) netorigin.Origin {
	if r.Origin.Known() {
		return r.Origin
	}
	return (*netorigin.Resolver)(nil).LookupSources(r.Audit.SourceIPs)
}

// newSourceEnv is the source object of an audit record from o, its origin.
func newSourceEnv(r *record.Record, o *netorigin.Origin) SourceEnv {
	if !o.Known() {
		return SourceEnv{}
	}
	s := SourceEnv{IP: o.IPString(r.Audit.SourceIPs), Class: string(o.Class), Lists: o.Lists}
	s.Geo = SourceGeo{ContinentCode: o.Geo.ContinentCode, CountryISOCode: o.Geo.CountryISOCode,
		CountryName: o.Geo.CountryName, RegionName: o.Geo.RegionName, CityName: o.Geo.CityName}
	s.AS.Number, s.AS.Organization.Name = int(o.AS.Number), o.AS.Organization
	switch {
	case o.Class != netorigin.ClassPublic:
	case o.AS.Number != 0:
		s.Network = "AS" + strconv.FormatUint(uint64(o.AS.Number), 10)
	default:
		bits := 24
		if o.IP.Is6() {
			bits = 48
		}
		s.Network = netip.PrefixFrom(o.IP, bits).Masked().String()
	}
	return s
}
