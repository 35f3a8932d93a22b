package posture

// Score is the severity-weighted share of passed verdicts of a scope.
type Score struct {
	Passed, Failed int // (check, object) verdicts
	// PassedWeight and Weight sum the severity weights (see the package
	// doc); Percent is 100 * PassedWeight / Weight, 100 when nothing was
	// judged.
	PassedWeight, Weight int
	Percent              float64
}

func (s *Score) add(failed bool, weight int) {
	s.Weight += weight
	if failed {
		s.Failed++
		return
	}
	s.Passed++
	s.PassedWeight += weight
}

func (s *Score) finish() {
	s.Percent = 100
	if s.Weight > 0 {
		s.Percent = 100 * float64(s.PassedWeight) / float64(s.Weight)
	}
}

// Score returns the cluster's score and one per namespace. It walks the
// inventory's verdict bits (no evaluation), so it costs a pass over the
// objects; call it at scrape or report time, not per change.
func (e *Engine) Score(cluster string) (total Score, byNamespace map[string]Score) {
	cs := e.cluster(cluster)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	ns := map[string]*Score{}
	for _, ent := range cs.inv.objs {
		scope := ent.obj.Namespace
		if ent.obj.Kind == "Namespace" {
			scope = ent.obj.Name
		}
		for w, word := range ent.evaluated {
			for b := 0; word != 0; b++ {
				if word&1 != 0 {
					i := w*64 + b
					failed, weight := bit(ent.failed, i), cs.cks.checks[i].weight
					total.add(failed, weight)
					if scope != "" {
						if ns[scope] == nil {
							ns[scope] = &Score{}
						}
						ns[scope].add(failed, weight)
					}
				}
				word >>= 1
			}
		}
	}
	total.finish()
	byNamespace = make(map[string]Score, len(ns))
	for n, s := range ns {
		s.finish()
		byNamespace[n] = *s
	}
	return total, byNamespace
}
