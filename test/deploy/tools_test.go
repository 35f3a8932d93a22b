package deploy

// Blank imports of the rendering libraries until their tests land.
import (
	_ "helm.sh/helm/v3/pkg/action"
	_ "sigs.k8s.io/kustomize/api/krusty"
)
