package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// promQL is Prometheus' own PromQL parser, with its default options.
var promQL = parser.NewParser(parser.Options{})

// targetLabels are the labels Prometheus adds to every series it scrapes
// through a ServiceMonitor or PodMonitor; rules and dashboard panels may
// group and match on them besides the labels kubesift registers.
var targetLabels = map[string]bool{
	"job": true, "instance": true, "namespace": true, "pod": true,
	"container": true, "service": true, "endpoint": true,
}

// strictDecode decodes an object into a typed one, refusing any field the
// type does not have (what the operator's CRD schema would prune).
func strictDecode(o *unstructured.Unstructured, into any) error {
	b, err := json.Marshal(o.Object)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(into)
}

// TestMonitoringObjects checks the prometheus-operator objects and the
// Grafana dashboard of every rendering: each object decodes strictly into
// the operator's Go types; every rule expression and dashboard query
// parses with Prometheus' PromQL parser and names only metric families
// kubesift registers, with their labels; the monitors reach every pod of
// the rendering on its metrics port.
func TestMonitoringObjects(t *testing.T) {
	src := kubesiftMetrics(t)
	seen := map[string]int{}
	for _, r := range renderings() {
		t.Run(r.name, func(t *testing.T) {
			objs := render(t, r)
			for _, o := range objs {
				switch o.GetKind() {
				case "ServiceMonitor":
					var sm monitoringv1.ServiceMonitor
					if err := strictDecode(o, &sm); err != nil {
						t.Errorf("%s: %v", objKey(o), err)
						continue
					}
					checkMonitorReach(t, objs, o, sm.Spec.Selector, sm.Spec.NamespaceSelector, true)
				case "PodMonitor":
					var pm monitoringv1.PodMonitor
					if err := strictDecode(o, &pm); err != nil {
						t.Errorf("%s: %v", objKey(o), err)
						continue
					}
					checkMonitorReach(t, objs, o, pm.Spec.Selector, pm.Spec.NamespaceSelector, false)
				case "PrometheusRule":
					var pr monitoringv1.PrometheusRule
					if err := strictDecode(o, &pr); err != nil {
						t.Errorf("%s: %v", objKey(o), err)
						continue
					}
					n := 0
					for _, g := range pr.Spec.Groups {
						for _, rule := range g.Rules {
							n++
							what := fmt.Sprintf("%s group %s rule %s%s", objKey(o), g.Name, rule.Alert, rule.Record)
							if rule.Alert != "" && rule.Labels["severity"] == "" {
								t.Errorf("%s: no severity label", what)
							}
							checkPromQL(t, src, what, rule.Expr.String())
						}
					}
					if n == 0 {
						t.Errorf("%s: no rules", objKey(o))
					}
				case "ConfigMap":
					if _, ok := o.GetLabels()["grafana_dashboard"]; !ok {
						continue
					}
					var cm corev1.ConfigMap
					toTyped(t, o, &cm)
					for key, data := range cm.Data {
						checkDashboard(t, src, objKey(o)+" "+key, []byte(data))
					}
				default:
					continue
				}
				seen[o.GetKind()]++
			}
		})
	}
	for _, k := range []string{"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"} {
		if seen[k] == 0 {
			t.Errorf("no rendering has a %s to check", k)
		}
	}
}

// checkMonitorReach: the monitor's namespaces and selector reach every
// workload of the rendering on a port named metrics (a ServiceMonitor
// through a Service with that port, which TestWorkloadWiring checks
// selects pods exposing it).
func checkMonitorReach(t *testing.T, objs []*unstructured.Unstructured, mon *unstructured.Unstructured, selector metav1.LabelSelector, nsSel monitoringv1.NamespaceSelector, viaService bool) {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(&selector)
	if err != nil || sel.Empty() {
		t.Errorf("%s: selector %v: %v (empty selects everything)", objKey(mon), selector, err)
		return
	}
	inNS := func(ns string) bool {
		if nsSel.Any {
			return true
		}
		if len(nsSel.MatchNames) == 0 {
			return ns == mon.GetNamespace()
		}
		for _, n := range nsSel.MatchNames {
			if n == ns {
				return true
			}
		}
		return false
	}
	var services []corev1.Service
	for _, o := range objs {
		if o.GetKind() != "Service" || !inNS(o.GetNamespace()) || !sel.Matches(labels.Set(o.GetLabels())) {
			continue
		}
		var s corev1.Service
		toTyped(t, o, &s)
		for _, p := range s.Spec.Ports {
			if p.Name == "metrics" {
				services = append(services, s)
			}
		}
	}
	for _, o := range objs {
		p, ok := podTemplateSpec(t, o)
		if !ok {
			continue
		}
		if !podHasPort(p.Spec, "metrics", 0) {
			t.Errorf("%s: no container port named metrics", objKey(o))
			continue
		}
		reached := false
		if viaService {
			for _, s := range services {
				reached = reached || (s.Namespace == o.GetNamespace() && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(p.Labels)))
			}
		} else {
			reached = inNS(o.GetNamespace()) && sel.Matches(labels.Set(p.Labels))
		}
		if !reached {
			t.Errorf("%s does not reach the pods of %s", objKey(mon), objKey(o))
		}
	}
}

// checkPromQL parses expr and checks every selector's metric and labels.
func checkPromQL(t *testing.T, src metricSource, what, expr string) {
	t.Helper()
	node, err := promQL.ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %q: %v", what, expr, err)
		return
	}
	// available returns the labels the series under n may carry (nil:
	// unknown, anything goes).
	available := func(n parser.Node) map[string]bool {
		out := map[string]bool{}
		unknown := false
		parser.Inspect(n, func(c parser.Node, _ []parser.Node) error {
			vs, ok := c.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			f, ok := src.family(vs.Name)
			if !ok || !f.labelsKnown {
				unknown = true
				return nil
			}
			for l := range f.labels {
				out[l] = true
			}
			if strings.HasSuffix(vs.Name, "_bucket") && f.histogram {
				out["le"] = true
			}
			return nil
		})
		if unknown {
			return nil
		}
		for l := range targetLabels {
			out[l] = true
		}
		return out
	}
	checkLabels := func(where string, ls []string, avail map[string]bool) {
		for _, l := range ls {
			if avail != nil && !avail[l] {
				t.Errorf("%s: %s: label %q is not a label of the series it applies to (%s)", what, where, l, strings.Join(keysOf(avail), ", "))
			}
		}
	}
	selectors := 0
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		switch v := n.(type) {
		case *parser.VectorSelector:
			selectors++
			if v.Name == "" {
				t.Errorf("%s: selector %s without a metric name", what, v)
				return nil
			}
			if _, ok := src.family(v.Name); !ok {
				t.Errorf("%s: metric %s is not registered by kubesift", what, v.Name)
				return nil
			}
			var names []string
			for _, m := range v.LabelMatchers {
				if m.Name != "__name__" {
					names = append(names, m.Name)
				}
			}
			checkLabels(v.String(), names, available(v))
		case *parser.AggregateExpr:
			checkLabels(v.Op.String()+" by", v.Grouping, available(v.Expr))
		case *parser.BinaryExpr:
			if m := v.VectorMatching; m != nil {
				avail := available(v.LHS)
				for l := range available(v.RHS) {
					if avail != nil {
						avail[l] = true
					}
				}
				checkLabels("vector matching", append(append([]string{}, m.MatchingLabels...), m.Include...), avail)
			}
		}
		return nil
	})
	if selectors == 0 {
		t.Errorf("%s: %q reads no metric", what, expr)
	}
}

// Grafana's variables, replaced by values PromQL parses.
var (
	grafanaInterval = regexp.MustCompile(`\$__(rate_)?interval`)
	grafanaVar      = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)
	labelValues     = regexp.MustCompile(`^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)$`)
)

// checkDashboard checks every panel query and every query variable of a
// Grafana dashboard.
func checkDashboard(t *testing.T, src metricSource, what string, data []byte) {
	t.Helper()
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if dash.Title == "" || dash.UID == "" {
		t.Errorf("%s: dashboard without title or uid", what)
	}
	queries := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queries++
			expr := grafanaVar.ReplaceAllString(grafanaInterval.ReplaceAllString(tg.Expr, "5m"), ".*")
			checkPromQL(t, src, what+" panel "+p.Title, expr)
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("%s: variable %s: %q is not label_values(selector, label)", what, v.Name, v.Definition)
			continue
		}
		if _, err := promQL.ParseExpr(m[1]); err != nil {
			t.Errorf("%s: variable %s: %v", what, v.Name, err)
		}
		if !targetLabels[m[2]] {
			t.Errorf("%s: variable %s: label %s is not one every kubesift series carries", what, v.Name, m[2])
		}
	}
	if queries == 0 {
		t.Errorf("%s: no panel queries", what)
	}
}
