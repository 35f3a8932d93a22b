package netorigin

import "net/netip"

// Class is the kind of network an address belongs to.
type Class string

// The classes of Origin.Class, checked in this order: an address in a
// configured cluster network is ClassCluster even when it is also private.
const (
	// ClassNone: no address, or one that does not parse.
	ClassNone Class = ""
	// ClassLoopback: 127.0.0.0/8, ::1 — the API server's own host.
	ClassLoopback Class = "loopback"
	// ClassLinkLocal: 169.254.0.0/16, fe80::/10 (cloud metadata services
	// live here).
	ClassLinkLocal Class = "link_local"
	// ClassCluster: the configured cluster networks (pod, service and
	// node CIDRs; processor.network.cluster_cidrs).
	ClassCluster Class = "cluster"
	// ClassPrivate: RFC 1918, RFC 6598 shared address space (100.64.0.0/10,
	// which carrier NAT and several CNIs use) and IPv6 unique local
	// addresses (fc00::/7).
	ClassPrivate Class = "private"
	// ClassOther: addresses that are neither a host's own nor routable on
	// the internet (unspecified, multicast, broadcast, 0.0.0.0/8,
	// 240.0.0.0/4).
	ClassOther Class = "other"
	// ClassPublic: every other address.
	ClassPublic Class = "public"
)

// Origin is what is known about a source address.
type Origin struct {
	// IP is the address, IPv4 unmapped from IPv6; invalid when the record
	// had none that parses.
	IP    netip.Addr
	Class Class
	// Lists are the names of the configured lists that hold IP, sorted;
	// shared by every address of the same ranges: read-only.
	Lists []string
	// Geo and AS are zero without the databases or when they do not know IP.
	Geo Geo
	AS  AS
}

// Geo is an address's location as a MaxMind City (or Country) database
// records it, in the ECS source.geo.* terms.
type Geo struct {
	ContinentCode  string
	ContinentName  string
	CountryISOCode string
	CountryName    string
	RegionISOCode  string // "<country>-<subdivision>", as ECS writes it
	RegionName     string
	CityName       string
	// Lat and Lon are set when HasLocation.
	Lat, Lon    float64
	HasLocation bool
}

// AS is an address's autonomous system (ASN database).
type AS struct {
	Number       uint32
	Organization string
}

// Known reports whether o holds a parsed address.
func (o Origin) Known() bool { return o.IP.IsValid() }

// IPString is o.IP.String(), reusing the record's own string of it when
// one of ips (the sourceIPs o was looked up from) is that string — nearly
// always, as kube-apiserver writes addresses canonically — instead of
// allocating another: the processor builds one per audit record.
func (o Origin) IPString(ips []string) string {
	var buf [48]byte
	s := o.IP.AppendTo(buf[:0])
	for _, ip := range ips {
		if ip == string(s) {
			return ip
		}
	}
	return string(s)
}
