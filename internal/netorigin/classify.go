package netorigin

import "net/netip"

// special are the fixed networks of the classes that are not read from
// configuration; netip's predicates cover the rest.
var special = func() *table {
	var ms []member
	add := func(set int, cidrs ...string) {
		for _, c := range cidrs {
			ms = append(ms, member{netip.MustParsePrefix(c), set})
		}
	}
	add(0, "100.64.0.0/10")                                            // private: RFC 6598 shared space
	add(1, "0.0.0.0/8", "240.0.0.0/4", "255.255.255.255/32", "::/128") // other
	t, err := buildTable([]string{string(ClassPrivate), string(ClassOther)}, ms)
	if err != nil {
		panic(err)
	}
	return t
}()

// classify is the class of a (unmapped), with cluster the table of the
// configured cluster networks.
func classify(a netip.Addr, cluster *table) Class {
	switch {
	case !a.IsValid():
		return ClassNone
	case a.IsLoopback():
		return ClassLoopback
	case a.IsLinkLocalUnicast():
		return ClassLinkLocal
	case cluster.lookup(a) != nil:
		return ClassCluster
	case a.IsPrivate():
		return ClassPrivate
	case a.IsMulticast() || a.IsUnspecified() || a.IsInterfaceLocalMulticast():
		return ClassOther
	}
	if s := special.lookup(a); s != nil {
		return Class(s[0])
	}
	return ClassPublic
}
