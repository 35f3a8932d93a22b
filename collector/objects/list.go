package objects

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/record"
)

// DefaultPageSize is List's page size when ListOptions.PageSize is 0: the
// size client-go's pager uses, small enough that a page of Pods stays a few
// MiB on the wire.
const DefaultPageSize = 500

// ListOptions configure List.
type ListOptions struct {
	// Kinds are the kinds to list, by the names of config.ObjectKinds;
	// empty means all of them.
	Kinds []string
	// Cluster is stamped on every record, as the source stamps it.
	Cluster record.Cluster
	// Sanitizer redacts the records; nil means the default redaction.
	Sanitizer *redact.Sanitizer
	// PageSize is the Limit of each list request; 0 means DefaultPageSize.
	PageSize int64
}

// Listing is what List read.
type Listing struct {
	// Records are the objects, in kind order (as ListOptions.Kinds, or
	// config.ObjectKinds) and in the server's order within a kind.
	Records []*record.Record
	// Unserved are the optional kinds the API server does not serve
	// (ValidatingAdmissionPolicy before Kubernetes 1.30), skipped as the
	// source skips them.
	Unserved []string
	// Rejected are the objects that could not be made into records (the
	// reasons the source dead-letters them for), each error naming the
	// object; the others are in Records.
	Rejected []error
}

// listFunc lists one page of a kind in every namespace.
type listFunc func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error)

func lister[L runtime.Object](list func(context.Context, metav1.ListOptions) (L, error)) listFunc {
	return func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) { return list(ctx, opts) }
}

// listers are the typed list calls of the collected kinds (the informers'
// own list calls are not exported). A test keeps them in step with kinds.
var listers = map[string]func(c kubernetes.Interface) listFunc{
	"Namespace":      func(c kubernetes.Interface) listFunc { return lister(c.CoreV1().Namespaces().List) },
	"Pod":            func(c kubernetes.Interface) listFunc { return lister(c.CoreV1().Pods("").List) },
	"Service":        func(c kubernetes.Interface) listFunc { return lister(c.CoreV1().Services("").List) },
	"ServiceAccount": func(c kubernetes.Interface) listFunc { return lister(c.CoreV1().ServiceAccounts("").List) },
	"Node":           func(c kubernetes.Interface) listFunc { return lister(c.CoreV1().Nodes().List) },
	"Deployment":     func(c kubernetes.Interface) listFunc { return lister(c.AppsV1().Deployments("").List) },
	"StatefulSet":    func(c kubernetes.Interface) listFunc { return lister(c.AppsV1().StatefulSets("").List) },
	"DaemonSet":      func(c kubernetes.Interface) listFunc { return lister(c.AppsV1().DaemonSets("").List) },
	"Job":            func(c kubernetes.Interface) listFunc { return lister(c.BatchV1().Jobs("").List) },
	"CronJob":        func(c kubernetes.Interface) listFunc { return lister(c.BatchV1().CronJobs("").List) },
	"Ingress":        func(c kubernetes.Interface) listFunc { return lister(c.NetworkingV1().Ingresses("").List) },
	"NetworkPolicy":  func(c kubernetes.Interface) listFunc { return lister(c.NetworkingV1().NetworkPolicies("").List) },
	"Role":           func(c kubernetes.Interface) listFunc { return lister(c.RbacV1().Roles("").List) },
	"ClusterRole":    func(c kubernetes.Interface) listFunc { return lister(c.RbacV1().ClusterRoles().List) },
	"RoleBinding":    func(c kubernetes.Interface) listFunc { return lister(c.RbacV1().RoleBindings("").List) },
	"ClusterRoleBinding": func(c kubernetes.Interface) listFunc {
		return lister(c.RbacV1().ClusterRoleBindings().List)
	},
	"MutatingWebhookConfiguration": func(c kubernetes.Interface) listFunc {
		return lister(c.AdmissionregistrationV1().MutatingWebhookConfigurations().List)
	},
	"ValidatingWebhookConfiguration": func(c kubernetes.Interface) listFunc {
		return lister(c.AdmissionregistrationV1().ValidatingWebhookConfigurations().List)
	},
	"ValidatingAdmissionPolicy": func(c kubernetes.Interface) listFunc {
		return lister(c.AdmissionregistrationV1().ValidatingAdmissionPolicies().List)
	},
}

// List reads every object of the collected kinds once, paging with
// Limit/Continue, and returns the records the source would publish for
// them: the same transform (managedFields dropped, Node heartbeats
// cleared), the same record building and redaction (objectRecord). It is
// the one-shot counterpart of the source, for `kubesift posture scan`: a
// scan judges what the continuous path would. An error (an unknown kind, a
// failed request, discovery) fails the whole listing: a scan of part of a
// cluster would report a better posture than there is.
func List(ctx context.Context, client kubernetes.Interface, opts ListOptions) (*Listing, error) {
	names := opts.Kinds
	if len(names) == 0 {
		names = config.ObjectKinds
	}
	ks := make([]kindInfo, 0, len(names))
	for _, n := range names {
		k, ok := kinds[n]
		if !ok || listers[n] == nil {
			return nil, fmt.Errorf("objects: kind %q is not collected (known: %v)", n, config.ObjectKinds)
		}
		ks = append(ks, k)
	}
	l := &Listing{}
	served, err := servedKinds(client, ks, func(k kindInfo) { l.Unserved = append(l.Unserved, k.kind) })
	if err != nil {
		return nil, err
	}
	san := opts.Sanitizer
	if san == nil {
		san = redact.Default()
	}
	limit := opts.PageSize
	if limit <= 0 {
		limit = DefaultPageSize
	}
	seen := time.Now()
	for _, k := range served {
		if err := l.listKind(ctx, k, listers[k.kind](client), limit, opts.Cluster, san, seen); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// listKind appends the records of every page of one kind.
func (l *Listing) listKind(ctx context.Context, k kindInfo, list listFunc, limit int64, cluster record.Cluster,
	san *redact.Sanitizer, seen time.Time) error {
	opts := metav1.ListOptions{Limit: limit}
	for {
		page, err := list(ctx, opts)
		if err != nil {
			return fmt.Errorf("objects: list %s: %w", k.resource, err)
		}
		items, err := meta.ExtractList(page)
		if err != nil {
			return fmt.Errorf("objects: list %s: %w", k.resource, err)
		}
		for _, it := range items {
			rec, err := listedRecord(k, it, cluster, san, seen)
			if err != nil {
				l.Rejected = append(l.Rejected, err)
				continue
			}
			l.Records = append(l.Records, rec)
		}
		lm, err := meta.ListAccessor(page)
		if err != nil {
			return fmt.Errorf("objects: list %s: %w", k.resource, err)
		}
		if lm.GetContinue() == "" {
			return nil
		}
		opts.Continue = lm.GetContinue()
	}
}

// listedRecord is the record of one listed object, built as the worker
// builds a cached one: transform, encode, objectRecord.
func listedRecord(k kindInfo, obj runtime.Object, cluster record.Cluster, san *redact.Sanitizer, seen time.Time) (*record.Record, error) {
	if _, err := transform(obj); err != nil {
		return nil, err
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, fmt.Errorf("objects: %s: not an object: %w", k.kind, err)
	}
	key := queueKey(k.kind, m.GetNamespace(), m.GetName())
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("objects: %s: encode: %w", key, err)
	}
	rec, _, err := objectRecord(k, m, raw, cluster, san, seen)
	if err != nil {
		return nil, fmt.Errorf("objects: %s: %w", key, err)
	}
	return rec, nil
}
