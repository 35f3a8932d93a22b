package config

import (
	"fmt"
	"regexp"
	"time"

	"github.com/kubesift/kubesift/internal/netorigin"
)

// ProcessorNetworkConfig says how the processor tells where a request came
// from (internal/netorigin): the rules' source object and the documents'
// source.geo, source.as and kubesift.source fields. docs/processor.md
// ("Where requests come from") describes it.
type ProcessorNetworkConfig struct {
	// ClusterCIDRs are the cluster's own networks (pod, service, node
	// CIDRs): a source address in one has the class "cluster" instead of
	// "private" or "public". A node or load balancer with a public address
	// that talks to the API server belongs here too.
	ClusterCIDRs []string `yaml:"cluster_cidrs"`
	// Lists are named lists of networks; a request from an address on one
	// carries its name in source.lists.
	Lists []NetworkListConfig `yaml:"lists"`
	// GeoIP names MaxMind-format databases for source.geo and source.as.
	GeoIP GeoIPConfig `yaml:"geoip"`
}

// NetworkListConfig is one named list of networks (IOC addresses, Tor
// exits, corporate egress): one CIDR or address per line, "#" comments.
type NetworkListConfig struct {
	// Name is what rules test for ("ioc" in source.lists).
	Name string `yaml:"name"`
	// Files are read in order; their networks together are the list.
	Files []string `yaml:"files"`
	// ReloadInterval is how often the files are checked for a change; a
	// changed list is swapped in, a broken one keeps the previous content.
	// 0 reads the files once.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// GeoIPConfig names GeoLite2/GeoIP2 databases; either may be left out.
type GeoIPConfig struct {
	CityDB string `yaml:"city_db"` // City or Country database: source.geo
	ASNDB  string `yaml:"asn_db"`  // ASN database: source.as
}

// defaultListReload is a list's reload_interval when the list does not
// name one: lists are hot-reloaded unless turned off with 0.
const defaultListReload = time.Minute

// UnmarshalYAML fills the default reload interval before reading.
func (c *NetworkListConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = NetworkListConfig{ReloadInterval: defaultListReload}
	type plain NetworkListConfig
	return unmarshal((*plain)(c))
}

// listName is what a list may be called: rules compare it as a string
// constant, and it is a metric label value.
var listName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// validate adds problems of processor.network to v.
func (c *ProcessorNetworkConfig) validate(v *validator) {
	for i, s := range c.ClusterCIDRs {
		if _, err := netorigin.ParseNetwork(s); err != nil {
			v.add(fmt.Sprintf("processor.network.cluster_cidrs[%d]", i), err.Error())
		}
	}
	if len(c.Lists) > netorigin.MaxLists {
		v.add("processor.network.lists", fmt.Sprintf("%d lists, at most %d", len(c.Lists), netorigin.MaxLists))
	}
	seen := map[string]bool{}
	for i, l := range c.Lists {
		field := fmt.Sprintf("processor.network.lists[%d]", i)
		switch {
		case !listName.MatchString(l.Name):
			v.add(field+".name", fmt.Sprintf("%q must be 1-63 of a-z, 0-9, '_', '.', '-', starting with a letter or digit", l.Name))
		case seen[l.Name]:
			v.add(field+".name", fmt.Sprintf("%q is listed twice", l.Name))
		}
		seen[l.Name] = true
		if len(l.Files) == 0 {
			v.add(field+".files", "must name at least one file")
		}
		for j, f := range l.Files {
			if f == "" {
				v.add(fmt.Sprintf("%s.files[%d]", field, j), "must not be empty")
			}
		}
		if l.ReloadInterval < 0 {
			v.add(field+".reload_interval", "must not be negative")
		}
	}
}

// Options are the netorigin.Resolver options of the configuration (the caller adds the registerer
// and logger). Validate has checked the CIDRs.
func (c *ProcessorNetworkConfig) Options() netorigin.Options {
	var o netorigin.Options
	for _, s := range c.ClusterCIDRs {
		if p, err := netorigin.ParseNetwork(s); err == nil {
			o.ClusterCIDRs = append(o.ClusterCIDRs, p)
		}
	}
	for _, l := range c.Lists {
		o.Lists = append(o.Lists, netorigin.ListSpec{Name: l.Name, Files: l.Files, ReloadInterval: l.ReloadInterval})
	}
	o.CityDB, o.ASNDB = c.GeoIP.CityDB, c.GeoIP.ASNDB
	return o
}

// checkNetworkFile parses a network list (the error names file:line) or
// opens a GeoIP database and checks its type.
func checkNetworkFile(r FileRef) error {
	switch r.Kind {
	case FileNetworkList:
		_, err := netorigin.ParseFile(r.Path)
		return err
	case FileGeoIPCity:
		db, err := netorigin.OpenDB(r.Path, "City", "Country")
		if err != nil {
			return err
		}
		return db.Close()
	case FileGeoIPASN:
		db, err := netorigin.OpenDB(r.Path, "ASN")
		if err != nil {
			return err
		}
		return db.Close()
	}
	return nil
}
