package netorigin

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
)

// u128 is an address as a 128-bit number, IPv4 in its IPv4-mapped IPv6
// form (::ffff:a.b.c.d), so one sorted table holds both families.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

// next is a+1; ok is false when a is the last address.
func (a u128) next() (u128, bool) {
	if a.lo != ^uint64(0) {
		return u128{a.hi, a.lo + 1}, true
	}
	if a.hi != ^uint64(0) {
		return u128{a.hi + 1, 0}, true
	}
	return u128{}, false
}

// prev is a-1 for an a that is not the first address.
func (a u128) prev() u128 {
	if a.lo != 0 {
		return u128{a.hi, a.lo - 1}
	}
	return u128{a.hi - 1, ^uint64(0)}
}

func key(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// bounds are the first and last address of p (p already masked).
func bounds(p netip.Prefix) (first, last u128) {
	first = key(p.Addr())
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	hostHi, hostLo := ^uint64(0), ^uint64(0)
	switch {
	case bits >= 128:
		hostHi, hostLo = 0, 0
	case bits >= 64:
		hostHi, hostLo = 0, ^uint64(0)>>(bits-64)
	default:
		hostHi = ^uint64(0) >> bits
	}
	return first, u128{first.hi | hostHi, first.lo | hostLo}
}

// MaxLists bounds the lists of one resolver: the set of lists holding a range
// is a bit mask.
const MaxLists = 64

// table maps address ranges to sets of names. starts, ends and sets are
// parallel; the ranges are sorted and do not overlap, so a lookup is one
// binary search. Adjacent ranges with the same set are merged.
type table struct {
	starts []u128
	ends   []u128 // inclusive
	sets   [][]string
}

// lookup returns the names of the range holding a, or nil; it allocates
// nothing.
func (t *table) lookup(a netip.Addr) []string {
	if t == nil || len(t.starts) == 0 {
		return nil
	}
	k := key(a)
	// The last range starting at or before k.
	lo, hi := 0, len(t.starts)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if k.less(t.starts[m]) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	if lo == 0 || t.ends[lo-1].less(k) {
		return nil
	}
	return t.sets[lo-1]
}

// member is one network of a named set.
type member struct {
	prefix netip.Prefix
	set    int // index into the names given to buildTable
}

// buildTable turns networks of up to MaxLists named sets into a table: a
// sweep over the ranges' boundaries, keeping how many networks of each set
// cover the current point, so overlapping and nested networks of one or
// several sets cost O(n log n) to build.
func buildTable(names []string, members []member) (*table, error) {
	if len(names) > MaxLists {
		return nil, fmt.Errorf("%d lists: at most %d", len(names), MaxLists)
	}
	type edge struct {
		at    u128
		set   int
		delta int
	}
	edges := make([]edge, 0, 2*len(members))
	for _, m := range members {
		first, last := bounds(m.prefix)
		edges = append(edges, edge{first, m.set, +1})
		if after, ok := last.next(); ok {
			edges = append(edges, edge{after, m.set, -1})
		}
	}
	slices.SortFunc(edges, func(a, b edge) int {
		switch {
		case a.at.less(b.at):
			return -1
		case b.at.less(a.at):
			return 1
		}
		return 0
	})
	t := &table{}
	interned := map[uint64][]string{}
	count := make([]int, len(names))
	var mask uint64
	for i := 0; i < len(edges); {
		at := edges[i].at
		for ; i < len(edges) && edges[i].at == at; i++ {
			e := edges[i]
			count[e.set] += e.delta
			if count[e.set] > 0 {
				mask |= 1 << e.set
			} else {
				mask &^= 1 << e.set
			}
		}
		// The range from at to the next edge (or the last address).
		end := u128{^uint64(0), ^uint64(0)}
		if i < len(edges) {
			end = edges[i].at.prev()
		}
		if mask == 0 {
			continue
		}
		set, ok := interned[mask]
		if !ok {
			for s := range names {
				if mask&(1<<s) != 0 {
					set = append(set, names[s])
				}
			}
			slices.Sort(set)
			interned[mask] = set
		}
		if n := len(t.starts); n > 0 && sameSet(t.sets[n-1], set) {
			if prev, ok := t.ends[n-1].next(); ok && prev == at {
				t.ends[n-1] = end
				continue
			}
		}
		t.starts = append(t.starts, at)
		t.ends = append(t.ends, end)
		t.sets = append(t.sets, set)
	}
	return t, nil
}

// sameSet compares interned sets: equal sets are the same slice.
func sameSet(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
