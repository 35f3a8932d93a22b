package netorigin

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/oschwald/maxminddb-golang/v2"
)

// geoDBs are the open MaxMind-format databases; either may be nil. mu
// keeps Close from unmapping a file under a lookup still reading it.
type geoDBs struct {
	mu        sync.RWMutex
	city, asn *maxminddb.Reader
}

// cityRecord is the part of a GeoIP2/GeoLite2 City or Country record that
// becomes source.geo. Only English names are read: struct decoding skips
// every other language without building maps.
type cityRecord struct {
	Continent struct {
		Code  string `maxminddb:"code"`
		Names struct {
			En string `maxminddb:"en"`
		} `maxminddb:"names"`
	} `maxminddb:"continent"`
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
		Names   struct {
			En string `maxminddb:"en"`
		} `maxminddb:"names"`
	} `maxminddb:"country"`
	Subdivisions []struct {
		ISOCode string `maxminddb:"iso_code"`
		Names   struct {
			En string `maxminddb:"en"`
		} `maxminddb:"names"`
	} `maxminddb:"subdivisions"`
	City struct {
		Names struct {
			En string `maxminddb:"en"`
		} `maxminddb:"names"`
	} `maxminddb:"city"`
	Location struct {
		Latitude  *float64 `maxminddb:"latitude"`
		Longitude *float64 `maxminddb:"longitude"`
	} `maxminddb:"location"`
}

// asnRecord is a GeoLite2/GeoIP2 ASN record.
type asnRecord struct {
	Number       uint32 `maxminddb:"autonomous_system_number"`
	Organization string `maxminddb:"autonomous_system_organization"`
}

// openGeo opens the databases that are named; nil when neither is.
func openGeo(cityPath, asnPath string) (*geoDBs, error) {
	if cityPath == "" && asnPath == "" {
		return nil, nil
	}
	g := &geoDBs{}
	var err error
	if cityPath != "" {
		if g.city, err = OpenDB(cityPath, "City", "Country"); err != nil {
			return nil, err
		}
	}
	if asnPath != "" {
		if g.asn, err = OpenDB(asnPath, "ASN"); err != nil {
			_ = g.close()
			return nil, err
		}
	}
	return g, nil
}

// OpenDB opens a MaxMind-format database whose type (metadata
// database_type, e.g. GeoLite2-City) contains one of kinds; the error
// names the file. `config validate` uses it to check
// processor.network.geoip.
func OpenDB(path string, kinds ...string) (*maxminddb.Reader, error) {
	db, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, k := range kinds {
		if strings.Contains(db.Metadata.DatabaseType, k) {
			return db, nil
		}
	}
	_ = db.Close()
	return nil, fmt.Errorf("%s: database type %q, want a %s database", path, db.Metadata.DatabaseType, strings.Join(kinds, " or "))
}

// lookup fills o's Geo and AS. A database error (a corrupt record) leaves
// them empty: the origin is what is known.
func (g *geoDBs) lookup(a netip.Addr, o *Origin) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.city != nil {
		var c cityRecord
		if err := g.city.Lookup(a).Decode(&c); err == nil {
			o.Geo = Geo{
				ContinentCode: c.Continent.Code, ContinentName: c.Continent.Names.En,
				CountryISOCode: c.Country.ISOCode, CountryName: c.Country.Names.En,
				CityName: c.City.Names.En,
			}
			if len(c.Subdivisions) > 0 {
				s := c.Subdivisions[0]
				o.Geo.RegionName = s.Names.En
				if s.ISOCode != "" && c.Country.ISOCode != "" {
					o.Geo.RegionISOCode = c.Country.ISOCode + "-" + s.ISOCode
				}
			}
			if l := c.Location; l.Latitude != nil && l.Longitude != nil {
				o.Geo.Lat, o.Geo.Lon, o.Geo.HasLocation = *l.Latitude, *l.Longitude, true
			}
		}
	}
	if g.asn != nil {
		var r asnRecord
		if err := g.asn.Lookup(a).Decode(&r); err == nil {
			o.AS = AS(r)
		}
	}
}

func (g *geoDBs) close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var errs []error
	for _, db := range []*maxminddb.Reader{g.city, g.asn} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	g.city, g.asn = nil, nil
	return errors.Join(errs...)
}
