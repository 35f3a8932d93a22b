// Package netorigin tells where a request came from: the class of its
// source address (loopback, link-local, the cluster's own networks, private,
// public), the user lists of networks it is on (IOC lists, Tor exits,
// corporate egress) and, when the user provides MaxMind-format databases,
// its geolocation and autonomous system.
//
// # The Resolver contract
//
//   - Lookup never fails: an address that does not parse has no class
//     (ClassNone) and nothing else; an address no database knows has no geo
//     or AS. A rule judging the origin sees what is known, never an error.
//   - The class and the list names cost O(log n) in the number of listed
//     networks and allocate nothing: both come from tables of sorted,
//     non-overlapping address ranges built once per load, and the list names
//     of a range are one shared, read-only slice. Callers must not modify
//     Origin.Lists.
//   - Lists are reloaded while the Resolver runs (Run): each list's files
//     are checked every reload_interval, and when one changed (size or
//     modification time) all of that list's files are read again and the
//     tables swapped atomically. A list that no longer parses keeps its
//     previous content; the failure names file and line, is logged and
//     counted (kubesift_network_list_reloads_total{result="error"}). At
//     start (New) a list that does not parse is an error: a processor does
//     not start without the lists it was told to use.
//   - The databases are opened once (memory-mapped) and closed by Close;
//     a new database file takes effect on restart.
//
// The processor enriches each audit record once (record.Record.Origin),
// and the rules (the source object) and the document builder (source.geo,
// source.as, kubesift.source) read that one result.
package netorigin
