package objects

import (
	"encoding/json"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

// BenchmarkBuildPod measures what the worker spends per changed Pod
// (encode, content hash, record, redaction) beside the baseline in the same
// run: json.Marshal of the same Pod alone, which no design avoids. A Pod
// with env entries is parsed and re-encoded by the redaction (env-value);
// one without is not parsed at all.
func BenchmarkBuildPod(b *testing.B) {
	p := pod("ns", "web-0", "u-web-0", "1")
	p.ManagedFields = nil
	p.Kind, p.APIVersion = "Pod", "v1"
	p.Labels = map[string]string{"app": "web", "pod-template-hash": "7d9c8b"}
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "MODE", Value: "prod"}, {Name: "DB_PASSWORD", Value: "x"}}
	for i := range 20 {
		p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: fmt.Sprint("V", i), Value: "value"})
	}
	raw, _ := json.Marshal(p)
	b.Logf("Pod of %d bytes", len(raw))

	b.Run("baseline_marshal", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	plain := p.DeepCopy()
	plain.Spec.Containers[0].Env = nil
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
	}{
		{"build_with_env_redacted", p},
		{"build_without_env", plain},
	} {
		b.Run(tc.name, func(b *testing.B) {
			src, err := New(testConfig("Pod"), testCluster, fake.NewClientset(), &memPublisher{}, nil, nil, testLogger(b))
			if err != nil {
				b.Fatal(err)
			}
			ss := newSession(src)
			inf := cache.NewSharedIndexInformer(&cache.ListWatch{}, &corev1.Pod{}, 0, cache.Indexers{})
			if err := inf.GetStore().Add(tc.pod); err != nil {
				b.Fatal(err)
			}
			ss.informers["Pod"] = inf
			key := queueKey("Pod", "ns", "web-0")
			for b.Loop() {
				delete(ss.published, key) // a new version every time
				rec, _, dl := ss.build(key)
				if rec == nil || dl != nil {
					b.Fatalf("not built: %v", dl)
				}
			}
		})
	}
}
