// Package integration holds the tests that need the real servers of the test
// ground (kube-apiserver + etcd, Kafka, Elasticsearch) and are not owned by one
// room: the checks that the ground itself behaves as the rooms' tests assume.
// Room-specific integration tests live next to their room.
package integration
