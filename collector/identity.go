package collector

import (
	"context"
	"log/slog"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/record"
)

// identityTimeout bounds the one read of the kube-system namespace: a
// collector whose API server does not answer must still start (with
// collector.cluster_uid), because its audit sources do not need the API.
const identityTimeout = 10 * time.Second

// KubeConfig is the collector's API access: collector.kubeconfig, or the
// in-cluster configuration in a pod; nil, nil when there is none.
func KubeConfig(cc *config.CollectorConfig) (*rest.Config, error) {
	switch {
	case cc.Kubeconfig != "":
		return clientcmd.BuildConfigFromFlags("", cc.Kubeconfig)
	case os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		return rest.InClusterConfig()
	}
	return nil, nil
}

// ClusterIdentity is the identity every record of this collector is stamped
// with: cluster.name, and the UID ClusterUID finds.
func ClusterIdentity(ctx context.Context, cfg *config.Config, log *slog.Logger) record.Cluster {
	return record.Cluster{Name: cfg.Cluster.Name, UID: ClusterUID(ctx, &cfg.Collector, log)}
}

// ClusterUID reads the kube-system namespace UID once, when the collector
// has API access (see KubeConfig); otherwise, or when the read fails, it is
// collector.cluster_uid (possibly empty). The namespace UID wins over a
// configured one that differs, because it is what the cluster itself says;
// the difference is logged. The read needs "get" on namespaces/kube-system.
// A failure is logged, never returned: the identity is a label, and a
// collector that cannot read it still has records to deliver.
func ClusterUID(ctx context.Context, cc *config.CollectorConfig, log *slog.Logger) string {
	rc, err := KubeConfig(cc)
	if rc == nil && err == nil {
		if cc.ClusterUID == "" {
			log.Info("no API access configured and collector.cluster_uid is empty: records carry no cluster UID")
		}
		return cc.ClusterUID
	}
	var cs kubernetes.Interface
	if err == nil {
		cs, err = kubernetes.NewForConfig(rc)
	}
	if err != nil {
		return configuredUID(err, cc.ClusterUID, log)
	}
	return namespaceUID(ctx, cs, cc.ClusterUID, log)
}

// namespaceUID is ClusterUID once a client exists: the kube-system UID, or
// configured when it cannot be read.
func namespaceUID(ctx context.Context, cs kubernetes.Interface, configured string, log *slog.Logger) string {
	rctx, cancel := context.WithTimeout(ctx, identityTimeout)
	defer cancel()
	ns, err := cs.CoreV1().Namespaces().Get(rctx, "kube-system", metav1.GetOptions{})
	if err != nil {
		return configuredUID(err, configured, log)
	}
	uid := string(ns.UID)
	if configured != "" && configured != uid {
		log.Warn("collector.cluster_uid differs from the kube-system namespace UID; using the API server's",
			"configured", configured, "api", uid)
	}
	return uid
}

// configuredUID is the fallback when the namespace cannot be read.
func configuredUID(err error, configured string, log *slog.Logger) string {
	log.Warn("cannot read the kube-system namespace UID; using collector.cluster_uid", "err", err, "cluster_uid", configured)
	return configured
}
