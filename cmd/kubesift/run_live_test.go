package main

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
)

// TestRunLivePostureOnRealAPIServer runs `kubesift run --kubeconfig`
// against the test ground's kube-apiserver: a Deployment created with a
// privileged container shows its finding on the console and in the store,
// and fixing the Deployment resolves it. The objects source holds a Lease
// of its own name, so it leads beside any other collector of the ground.
func TestRunLivePostureOnRealAPIServer(t *testing.T) {
	testenv.Short(t)
	kubeconfig := testenv.Need(t, "kube", "KUBESIFT_KUBECONFIG_ADMIN")[0] // what run is given
	cs := testenv.NewKubeClient(t, "kubesift-run-posture-test").CS
	sfx := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	ns := "ks-run-posture-" + sfx
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Namespaces never finish deleting on the ground (no namespace
	// controller); what is in them stays with them.
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	cfg := config.Default()
	cfg.Collector.Objects.Kinds = []string{"Deployment"}
	cfg.Collector.Objects.LeaderElection.LeaseName = "ks-run-posture-" + sfx
	var stdout, stderr testenv.Buffer
	out := t.TempDir()
	o := &runOptions{out: out, kubeconfig: kubeconfig, progress: "never", stdout: &stdout, stderr: &stderr}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- runAll(runCtx, &cfg, o, slog.New(slog.NewTextHandler(&stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}()
	defer func() {
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
	}()
	printed := func(state string) func() bool {
		want := regexp.MustCompile(`(?m)^finding ` + state + `\s.*posture-privileged-container  Deployment ` + regexp.QuoteMeta(ns+"/web") + `  `)
		return func() bool { return want.MatchString(stdout.String()) }
	}

	d := liveDeployment(ns, "web", true)
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the privileged Deployment's finding printed", time.Minute, printed("open"))
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Template.Spec.Containers[0].SecurityContext.Privileged = new(bool)
	if _, err := cs.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the finding resolved once the Deployment is fixed", time.Minute, printed("resolved"))

	stop()
	select {
	case err := <-done:
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 130 {
			t.Fatalf("run ended with %v, want the interrupted exit (130)", err)
		}
	case <-ctx.Done():
		t.Fatal("run did not stop")
	}
	key := "posture-privileged-container Deployment " + ns + "/web"
	if slices.Contains(storedFindings(t, out), key) {
		t.Errorf("the store still holds %s open", key)
	}
}

// liveDeployment is a one-container Deployment, privileged or not.
func liveDeployment(ns, name string, privileged bool) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "registry.example/app:1.0",
					SecurityContext: &corev1.SecurityContext{Privileged: &privileged},
				}}},
			},
		},
	}
}
