package netorigin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ListSpec is one named list of networks (processor.network.lists).
type ListSpec struct {
	Name string
	// Networks are entries given directly (rule fixtures); the networks
	// of Files are added to them.
	Networks []netip.Prefix
	Files    []string
	// ReloadInterval is how often the files are checked for a change; 0
	// loads them once.
	ReloadInterval time.Duration
}

// Options configure a Resolver. Every field is optional.
type Options struct {
	// ClusterCIDRs are the cluster's own networks (ClassCluster).
	ClusterCIDRs []netip.Prefix
	Lists        []ListSpec
	// CityDB and ASNDB are MaxMind-format databases (GeoLite2/GeoIP2 City
	// or Country; GeoLite2/GeoIP2 ASN).
	CityDB, ASNDB string
	// Registerer receives the list metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Resolver looks up the Origin of addresses. A nil *Resolver classifies
// with no cluster networks, lists or databases. It is safe for concurrent
// use; see the package doc for its contract.
type Resolver struct {
	cluster *table
	lists   atomic.Pointer[table]
	geo     *geoDBs
	log     *slog.Logger
	m       listMetrics

	mu     sync.Mutex // serialises reloads of the lists
	loaded []loadedList
}

// loadedList is a list's current content and the state of the files it
// was read from.
type loadedList struct {
	spec     ListSpec
	prefixes []netip.Prefix
	files    []fileStamp
}

// fileStamp is what tells a changed file: a rewrite changes its size or
// modification time (nanoseconds), a replacement by rename both.
type fileStamp struct {
	size  int64
	mtime time.Time
}

// New builds a Resolver: the cluster networks, every list read and the
// databases opened. Any failure is an error naming the list, file and line
// or the database.
func New(o Options) (*Resolver, error) {
	r := &Resolver{log: o.Logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	var err error
	cluster := make([]member, len(o.ClusterCIDRs))
	for i, p := range o.ClusterCIDRs {
		cluster[i] = member{p.Masked(), 0}
	}
	if r.cluster, err = buildTable([]string{string(ClassCluster)}, cluster); err != nil {
		return nil, err
	}
	if len(o.Lists) > MaxLists {
		return nil, fmt.Errorf("network lists: %d lists, at most %d", len(o.Lists), MaxLists)
	}
	for _, spec := range o.Lists {
		l, err := readList(spec)
		if err != nil {
			return nil, fmt.Errorf("network list %q: %w", spec.Name, err)
		}
		r.loaded = append(r.loaded, l)
	}
	if err := r.swap(); err != nil {
		return nil, err
	}
	if r.geo, err = openGeo(o.CityDB, o.ASNDB); err != nil {
		return nil, err
	}
	if r.m, err = newListMetrics(o.Registerer, o.Lists); err != nil {
		_ = r.Close()
		return nil, err
	}
	for _, l := range r.loaded {
		r.m.prefixes.WithLabelValues(l.spec.Name).Set(float64(len(l.prefixes)))
	}
	return r, nil
}

// readList reads every file of a list.
func readList(spec ListSpec) (loadedList, error) {
	l := loadedList{spec: spec, prefixes: slices.Clone(spec.Networks)}
	for _, path := range spec.Files {
		st, err := os.Stat(path)
		if err != nil {
			return loadedList{}, err
		}
		ps, err := ParseFile(path)
		if err != nil {
			return loadedList{}, err
		}
		l.prefixes = append(l.prefixes, ps...)
		l.files = append(l.files, fileStamp{st.Size(), st.ModTime()})
	}
	return l, nil
}

// swap builds the lists' table from r.loaded and makes it current.
func (r *Resolver) swap() error {
	names := make([]string, len(r.loaded))
	var ms []member
	for i, l := range r.loaded {
		names[i] = l.spec.Name
		for _, p := range l.prefixes {
			ms = append(ms, member{p, i})
		}
	}
	t, err := buildTable(names, ms)
	if err != nil {
		return err
	}
	r.lists.Store(t)
	return nil
}

// Lookup is the Origin of ip, as an audit record writes a source address.
func (r *Resolver) Lookup(ip string) Origin {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return Origin{}
	}
	return r.LookupAddr(a)
}

// LookupSources is the Origin of a request whose audit record lists ips
// (sourceIPs: the X-Forwarded-For chain, X-Real-Ip, then the address of
// the connection). It is the first address — the client, as the proxies
// in front of the API server report it — unless the connection came from
// a public address: then nothing vouches for the forwarded entries, which
// any client can write, and the connection's address is the origin. So
// "X-Forwarded-For: 10.0.0.1" sent from the internet does not make a
// request look private.
func (r *Resolver) LookupSources(ips []string) Origin {
	if len(ips) == 0 {
		return Origin{}
	}
	if len(ips) > 1 {
		peer := r.Lookup(ips[len(ips)-1])
		if peer.Class == ClassPublic {
			return peer
		}
		if o := r.Lookup(ips[0]); o.Known() {
			return o
		}
		return peer // a client entry that is not an address
	}
	return r.Lookup(ips[0])
}

// LookupAddr is the Origin of a.
func (r *Resolver) LookupAddr(a netip.Addr) Origin {
	a = a.Unmap().WithZone("")
	if !a.IsValid() {
		return Origin{}
	}
	if r == nil {
		return Origin{IP: a, Class: classify(a, nil)}
	}
	o := Origin{IP: a, Class: classify(a, r.cluster), Lists: r.lists.Load().lookup(a)}
	if r.geo != nil && o.Class == ClassPublic {
		r.geo.lookup(a, &o)
	}
	return o
}

// Run checks the lists for changes, each at its reload interval, until
// ctx ends, then closes the databases. It returns nil.
func (r *Resolver) Run(ctx context.Context) error {
	defer r.Close()
	r.mu.Lock()
	intervals := make([]time.Duration, len(r.loaded))
	for i, l := range r.loaded {
		intervals[i] = l.spec.ReloadInterval
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for i, every := range intervals {
		if every <= 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					r.Reload(i)
				}
			}
		}()
	}
	wg.Wait()
	<-ctx.Done()
	return nil
}

// Reload reads list i again when one of its files changed (Run calls it
// on each tick). It reports whether the list was replaced. A list that
// fails to read keeps its previous content; the failure is logged and
// counted, and retried on the next tick only if the files change again.
func (r *Resolver) Reload(i int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.loaded[i]
	if !r.changed(cur) {
		return false
	}
	name := cur.spec.Name
	l, err := readList(cur.spec)
	if err == nil {
		r.loaded[i] = l
		if err = r.swap(); err != nil {
			r.loaded[i] = cur
		}
	}
	if err != nil {
		// Remember the broken files' stamps, so the error is reported
		// once per change rather than on every tick.
		cur.files = r.stamps(cur.spec.Files, cur.files)
		r.loaded[i] = cur
		r.m.reloads.WithLabelValues(name, reloadError).Inc()
		r.log.Error("network list reload failed; the previous content stays in force", "list", name, "err", err)
		return false
	}
	r.m.reloads.WithLabelValues(name, reloadOK).Inc()
	r.m.prefixes.WithLabelValues(name).Set(float64(len(l.prefixes)))
	r.log.Info("network list reloaded", "list", name, "networks", len(l.prefixes))
	return true
}

// changed reports whether any file of l differs from when it was read.
func (r *Resolver) changed(l loadedList) bool {
	now := r.stamps(l.spec.Files, l.files)
	for i := range now {
		if now[i] != l.files[i] {
			return true
		}
	}
	return false
}

// stamps are the files' current stamps; a file that cannot be read keeps
// old's stamp and counts as changed only once it can be read again.
func (r *Resolver) stamps(paths []string, old []fileStamp) []fileStamp {
	out := make([]fileStamp, len(paths))
	for i, p := range paths {
		st, err := os.Stat(p)
		switch {
		case err == nil:
			out[i] = fileStamp{st.Size(), st.ModTime()}
		case i < len(old):
			// A file being replaced may be missing for a moment; an
			// unreadable one is reported when it reappears changed.
			out[i] = old[i]
		}
	}
	return out
}

// Close closes the databases. Lookups after Close find no geo or AS.
func (r *Resolver) Close() error {
	if r == nil || r.geo == nil {
		return nil
	}
	return r.geo.close()
}

// Results of kubesift_network_list_reloads_total.
const (
	reloadOK    = "ok"
	reloadError = "error" // the previous content stays in force
)

type listMetrics struct {
	reloads  *prometheus.CounterVec
	prefixes *prometheus.GaugeVec
}

func newListMetrics(reg prometheus.Registerer, lists []ListSpec) (listMetrics, error) {
	m := listMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubesift_network_list_reloads_total",
			Help: "Reloads of a network list after its files changed, by list and result (ok; error: the previous content stays in force)."},
			[]string{"list", "result"}),
		prefixes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubesift_network_list_networks",
			Help: "Networks (CIDRs and addresses) of a network list in force, by list."}, []string{"list"}),
	}
	for _, l := range lists {
		m.reloads.WithLabelValues(l.Name, reloadOK)
		m.reloads.WithLabelValues(l.Name, reloadError)
	}
	if reg != nil {
		if err := errors.Join(reg.Register(m.reloads), reg.Register(m.prefixes)); err != nil {
			return listMetrics{}, fmt.Errorf("network list metrics: %w", err)
		}
	}
	return m, nil
}
