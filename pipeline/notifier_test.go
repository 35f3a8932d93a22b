package pipeline

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink/notify"
)

// TestNewNotifierRefuses: what NewNotifier checks before it connects
// anywhere, each error naming the field.
func TestNewNotifierRefuses(t *testing.T) {
	console := notify.NotifierFunc(func(context.Context, *notify.Notification) (bool, error) { return false, nil })
	withReceiver := func(name string) func(*config.Config) {
		return func(c *config.Config) {
			c.Notify.Route = config.RouteConfig{Receiver: name}
			c.Notify.Receivers = []config.ReceiverConfig{{Name: name,
				WebhookConfigs: []config.WebhookConfig{{URL: "http://127.0.0.1:1/hook"}}}}
		}
	}
	tests := []struct {
		name    string
		console notify.Notifier
		mod     func(*config.Config)
		wantErr string
	}{
		{name: "no receivers", wantErr: "notify.receivers: at least one receiver"},
		{name: "no brokers", mod: func(c *config.Config) { withReceiver("hook")(c); c.Kafka.Brokers = nil }, wantErr: "kafka.brokers"},
		{name: "console name taken", console: console, mod: withReceiver(ConsoleReceiver), wantErr: `"console" is reserved`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Kafka.Brokers = []string{"127.0.0.1:1"}
			if tc.mod != nil {
				tc.mod(&cfg)
			}
			_, err := NewNotifier(context.Background(), &cfg, NotifierDeps{Registerer: prometheus.NewRegistry(), Console: tc.console})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		listen string
		want   bool
	}{
		{"127.0.0.1:9095", true}, {"[::1]:9095", true}, {"localhost:9095", true},
		{":9095", false}, {"0.0.0.0:9095", false}, {"10.0.0.7:9095", false}, {"notify:9095", false}, {"bad", false},
	} {
		if got := LoopbackOnly(tc.listen); got != tc.want {
			t.Errorf("LoopbackOnly(%q) = %v, want %v", tc.listen, got, tc.want)
		}
	}
}

// TestSilenceAPIServe: the silence API's server stops without error when
// its context ends, and a server that cannot serve is an error (the group
// stops and says so) rather than a silently missing API.
func TestSilenceAPIServe(t *testing.T) {
	tests := []struct {
		name    string
		closeLn bool
		wantErr bool
	}{
		{name: "stops on cancel"},
		{name: "listener gone", closeLn: true, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			if tc.closeLn {
				ln.Close()
			}
			a := &silenceAPI{srv: &http.Server{Handler: http.NotFoundHandler()}, ln: ln}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- a.serve(ctx) }()
			if !tc.closeLn {
				// Serving until told to stop.
				testenv.WaitForNil(t, "the server to answer", 10*time.Second, func() error {
					res, err := http.Get("http://" + ln.Addr().String() + "/")
					if err == nil {
						res.Body.Close()
					}
					return err
				})
				cancel()
			}
			defer cancel()
			// A broken listener ends serve by itself, with no cancel.
			if err := <-done; (err != nil) != tc.wantErr {
				t.Fatalf("serve = %v, want an error: %v", err, tc.wantErr)
			}
		})
	}
}
