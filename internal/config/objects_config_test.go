package config

import (
	"strings"
	"testing"
	"time"
)

func TestObjectsConfig(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string // a substring naming the field; "" = valid
		check   func(t *testing.T, c ObjectsConfig)
	}{
		{name: "defaults", yaml: "enabled: true", check: func(t *testing.T, c ObjectsConfig) {
			if !c.Enabled || c.QueueSize != 10000 || c.LeaderElection.LeaseName != "kubesift-objects-leader" ||
				!c.LeaderElection.Enabled || c.LeaderElection.LeaseDuration != 15*time.Second || c.Batch.MaxRecords != 500 || len(c.Kinds) != 0 {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{name: "kinds narrowed", yaml: "kinds: [Pod, ClusterRole]", check: func(t *testing.T, c ObjectsConfig) {
			if strings.Join(c.Kinds, ",") != "Pod,ClusterRole" {
				t.Errorf("kinds %v", c.Kinds)
			}
		}},
		{name: "secrets are not a kind", yaml: "kinds: [Pod, Secret]", wantErr: "collector.objects.kinds[1]"},
		{name: "duplicate kind", yaml: "kinds: [Pod, Pod]", wantErr: "collector.objects.kinds[1]: duplicate kind"},
		{name: "queue", yaml: "queue_size: 0", wantErr: "collector.objects.queue_size"},
		{name: "grace", yaml: "shutdown_grace: -1s", wantErr: "collector.objects.shutdown_grace"},
		{name: "lease name", yaml: "leader_election: {lease_name: Bad_Name}", wantErr: "collector.objects.leader_election.lease_name"},
		{name: "lease timing", yaml: "leader_election: {lease_duration: 5s, renew_deadline: 10s}", wantErr: "collector.objects.leader_election.lease_duration"},
		{name: "batch", yaml: "batch: {max_records: 0}", wantErr: "collector.objects.batch.max_records"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte("cluster: {name: c}\ncollector:\n  objects: "+flow(tc.yaml)+"\n"), "c.yaml", nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg.Collector.Objects)
		})
	}
}

// flow turns "a: b" into the flow mapping "{a: b}".
func flow(s string) string { return "{" + s + "}" }
