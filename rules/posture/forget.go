package posture

// Forget drops a cluster's inventory, findings and dependency index
// without deciding anything: the processor calls it when the cluster's
// partition moves to another member, which rebuilds the cluster from the
// objects topic and the state index. Unknown clusters are a no-op.
func (e *Engine) Forget(cluster string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.clusters, cluster)
}
