// Package posture holds the planted posture fixture and the tests that keep
// it honest; it has no code of its own.
//
// The fixture contract: testdata/planted/*.yaml are Kubernetes objects with
// planted violations of the CIS Kubernetes Benchmark v1.10 section 5 items and
// of the programme's own checks, beside compliant look-alikes. Each file is
// one independent set: it creates its own namespaces (named __RUN__-<theme>,
// where __RUN__ is a prefix unique to one run) and cluster-scoped objects
// named __RUN__-<what>, so a test can apply and delete one set without
// touching another or another run's. The two exceptions are named in their
// files: a workload in the default namespace (the check is about that
// namespace) and a CNI-style DaemonSet in kube-system (the default
// exemptions match it by name).
//
// testdata/expected.yaml says, per object, which check themes must report it,
// which may, and (by omission) which must not; themes carry their CIS id so a
// scanner's findings can be matched to them. A posture scan compared against
// the fixture must assume the approved registries that file names.
//
// Every object must be accepted by a real kube-apiserver:
// TestPlantedSetOnRealAPIServer applies the whole set to the test ground and
// deletes it again, and TestExpectationsMatchFixture keeps the two files in
// step. hack/posture-compare.sh applies the same files for a side-by-side run
// of an existing scanner; docs/posture-compare.md has its results.
package posture
