package testenv

import (
	"fmt"
	"net"
	"os"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// WriteMMDB writes a MaxMind-format database to path, of dbType (the
// metadata database_type: "GeoLite2-City", "GeoLite2-ASN") with one
// record per CIDR, as GeoIP databases shape them: values are maps,
// slices, strings, float64 (coordinates) and uint32 (AS numbers).
// Documentation and private networks are allowed, so tests can use
// 203.0.113.0/24 and friends.
func WriteMMDB(t testing.TB, path, dbType string, records map[string]map[string]any) {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: dbType, RecordSize: 28, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, rec := range records {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		v, err := mmdbValue(rec)
		if err != nil {
			t.Fatalf("%s: %v", cidr, err)
		}
		if err := w.Insert(n, v); err != nil {
			t.Fatalf("%s: %v", cidr, err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func mmdbValue(v any) (mmdbtype.DataType, error) {
	switch x := v.(type) {
	case string:
		return mmdbtype.String(x), nil
	case float64:
		return mmdbtype.Float64(x), nil
	case uint32:
		return mmdbtype.Uint32(x), nil
	case int:
		return mmdbtype.Uint32(x), nil
	case map[string]any:
		m := mmdbtype.Map{}
		for k, e := range x {
			ev, err := mmdbValue(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			m[mmdbtype.String(k)] = ev
		}
		return m, nil
	case []any:
		s := make(mmdbtype.Slice, len(x))
		for i, e := range x {
			ev, err := mmdbValue(e)
			if err != nil {
				return nil, err
			}
			s[i] = ev
		}
		return s, nil
	}
	return nil, fmt.Errorf("%T is not a MaxMind DB value this helper writes", v)
}
