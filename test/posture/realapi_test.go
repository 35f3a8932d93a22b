package posture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubesift/kubesift/internal/testenv"
)

const fieldManager = "kubesift-test-posture"

// newGround returns an admin client of the test ground's kube-apiserver.
// The ground has no namespace controller: RemoveAll finalizes the sets'
// namespaces by hand.
func newGround(t testing.TB) *testenv.KubeClient {
	t.Helper()
	return testenv.NewKubeClient(t, fieldManager)
}

func runPrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "pst-" + hex.EncodeToString(b[:])
}

// enforcesRestricted reports whether a set's own namespace enforces Pod
// Security "restricted": there the fixture's compliant workloads must draw
// no warning at all.
func enforcesRestricted(objs []*unstructured.Unstructured, ns string) bool {
	for _, o := range objs {
		if o.GetKind() == "Namespace" && o.GetName() == ns {
			return o.GetLabels()["pod-security.kubernetes.io/enforce"] == "restricted"
		}
	}
	return false
}

// TestPlantedSetOnRealAPIServer applies every planted set to the test
// ground's kube-apiserver under a prefix of its own, checks that the server
// accepted and stored every object, then deletes the set and checks that
// nothing of it is left. A warning fails the test unless it is Pod Security
// admission's, which the planted violations draw on purpose in namespaces
// that do not enforce restricted. The built-in objects the expectations list
// as compliant look-alikes must exist, built in, on the same server.
func TestPlantedSetOnRealAPIServer(t *testing.T) {
	g := newGround(t)
	exp := loadExpectations(t)
	run := runPrefix()
	t.Logf("run prefix %s", run)

	t.Run("preexisting", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, e := range exp.Preexisting {
			o := &unstructured.Unstructured{}
			o.SetAPIVersion("rbac.authorization.k8s.io/v1")
			o.SetKind(e.Kind)
			ri, _, err := g.Resource(o)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ri.Get(ctx, e.Name, metav1.GetOptions{})
			if err != nil {
				t.Errorf("%s: %v", e.key(), err)
				continue
			}
			if got.GetLabels()["kubernetes.io/bootstrapping"] != "rbac-defaults" {
				t.Errorf("%s: not labelled kubernetes.io/bootstrapping=rbac-defaults: %v", e.key(), got.GetLabels())
			}
		}
	})

	for _, s := range loadSets(t, run) {
		t.Run(s.file, func(t *testing.T) {
			removed := false
			t.Cleanup(func() {
				if !removed {
					g.RemoveAll(t, s.objs)
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			for _, o := range s.objs {
				got, warnings, err := g.Apply(ctx, o, false)
				if err != nil {
					t.Errorf("%s: server-side apply: %v", keyOf(o), err)
					continue
				}
				if got.GetUID() == "" {
					t.Errorf("%s: stored without a uid", keyOf(o))
				}
				for _, w := range warnings {
					if strings.Contains(w, "PodSecurity") && !enforcesRestricted(s.objs, o.GetNamespace()) {
						t.Logf("%s: planted Pod Security warning: %s", keyOf(o), w)
						continue
					}
					t.Errorf("%s: warning: %s", keyOf(o), w)
				}
			}
			g.RemoveAll(t, s.objs)
			removed = true
		})
	}
}
