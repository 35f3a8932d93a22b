package config

import (
	"strings"
	"testing"
)

func TestServerListenFromEnvironment(t *testing.T) {
	tests := []struct {
		name, yaml, env, want, err string
	}{
		{"file", "server: {listen: 127.0.0.1:9190}\n", "", "127.0.0.1:9190", ""},
		{"environment over file", "server: {listen: 127.0.0.1:9190}\n", "127.0.0.1:9191", "127.0.0.1:9191", ""},
		{"environment over default", "", "127.0.0.1:9192", "127.0.0.1:9192", ""},
		{"validated", "", "nonsense", "", "server.listen: not host:port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), "test.yaml", func(k string) string {
				if k == EnvServerListen {
					return tc.env
				}
				return ""
			})
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error %v, want %q", err, tc.err)
				}
			case err != nil:
				t.Fatal(err)
			case c.Server.Listen != tc.want:
				t.Errorf("server.listen %q, want %q", c.Server.Listen, tc.want)
			}
		})
	}
}
