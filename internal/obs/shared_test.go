package obs

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegister(t *testing.T) {
	a := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_a_total", Help: "a"})
	b := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_b_total", Help: "b"})
	if err := Register(nil, a, b); err != nil {
		t.Fatalf("nil registry: %v", err)
	}
	reg := prometheus.NewRegistry()
	if err := Register(reg, a, b); err != nil {
		t.Fatal(err)
	}
	a.Inc()
	b.Inc()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_c_total", Help: "c"})
	c.Inc()
	dup := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_b_total", Help: "b"})
	if err := Register(reg, c, dup); err == nil {
		t.Fatal("a second collector of the same name was accepted")
	}
	// All or none: c, registered before the refusal, is gone again.
	mfs, _ := reg.Gather()
	if len(mfs) != 2 {
		t.Fatalf("%d families registered, want 2 (a, b)", len(mfs))
	}
}
