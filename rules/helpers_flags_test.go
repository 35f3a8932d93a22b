package rules

import (
	"slices"
	"testing"
)

// TestFlagValue reads flags as the components' flag parser does.
func TestFlagValue(t *testing.T) {
	cases := []struct {
		name string
		args []string
		flag string
		want string
		set  bool
	}{
		{"equals", []string{"--profiling=false"}, "--profiling", "false", true},
		{"absent", []string{"--v=2"}, "--profiling", "", false},
		{"last occurrence wins", []string{"--anonymous-auth=false", "--v=2", "--anonymous-auth=true"}, "--anonymous-auth", "true", true},
		{"separate value", []string{"--audit-log-path", "/var/log/audit.log", "--v=2"}, "--audit-log-path", "/var/log/audit.log", true},
		{"bare flag is true", []string{"--profiling", "--v=2"}, "--profiling", "true", true},
		{"bare flag last", []string{"--v=2", "--profiling"}, "--profiling", "true", true},
		{"empty value", []string{"--token-auth-file="}, "--token-auth-file", "", true},
		{"longer flag with the same prefix", []string{"--audit-log-maxage-days=3"}, "--audit-log-maxage", "", false},
		{"value holding =", []string{"--feature-gates=A=true,B=false"}, "--feature-gates", "A=true,B=false", true},
		{"after -- is positional", []string{"--", "--profiling=true"}, "--profiling", "", false},
		{"flag as another flag's value is still a value", []string{"--audit-log-path", "--profiling=true"}, "--profiling", "true", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, set := flagValue(tc.args, tc.flag)
			if got != tc.want || set != tc.set {
				t.Errorf("flagValue(%q, %q) = %q, %v; want %q, %v", tc.args, tc.flag, got, set, tc.want, tc.set)
			}
		})
	}
}

// TestComponentArgs recognises a component by its executable or, without a
// command, by its container's name, and joins command and args.
func TestComponentArgs(t *testing.T) {
	pod := func(containers ...any) map[string]any {
		return map[string]any{"kind": "Pod", "spec": map[string]any{"containers": containers}}
	}
	cases := []struct {
		name      string
		obj       map[string]any
		component string
		want      []string
		ok        bool
	}{
		{"kubeadm command", pod(map[string]any{"name": "kube-apiserver", "command": []any{"kube-apiserver", "--a=1"}}), "kube-apiserver", []string{"--a=1"}, true},
		{"absolute path plus args", pod(map[string]any{"name": "x", "command": []any{"/usr/local/bin/etcd", "--a=1"}, "args": []any{"--b=2"}}), "etcd", []string{"--a=1", "--b=2"}, true},
		{"entrypoint, by name", pod(map[string]any{"name": "kube-scheduler", "args": []any{"--b=2"}}), "kube-scheduler", []string{"--b=2"}, true},
		{"named so, running something else", pod(map[string]any{"name": "kube-apiserver", "command": []any{"/bin/sh", "-c", "kube-apiserver --a=1"}}), "kube-apiserver", nil, false},
		{"second container", pod(map[string]any{"name": "sidecar", "command": []any{"sleep"}}, map[string]any{"name": "etcd", "command": []any{"etcd", "--c=3"}}), "etcd", []string{"--c=3"}, true},
		{"other component", pod(map[string]any{"name": "kube-scheduler", "command": []any{"kube-scheduler"}}), "kube-apiserver", nil, false},
		{"not a pod", map[string]any{"kind": "ConfigMap", "data": map[string]any{"command": "kube-apiserver"}}, "kube-apiserver", nil, false},
		{"nil", nil, "etcd", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := componentArgs(tc.obj, tc.component)
			if !slices.Equal(got, tc.want) || ok != tc.ok {
				t.Errorf("componentArgs = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	obj := pod(map[string]any{"name": "kube-apiserver", "command": []any{"kube-apiserver", "--authorization-mode= Node, ,RBAC"}})
	if got := componentFlagList(obj, "kube-apiserver", "--authorization-mode"); !slices.Equal(got, []string{"Node", "RBAC"}) {
		t.Errorf("flag_list = %q, want [Node RBAC]", got)
	}
}

// FuzzFlagValue: any command line parses without a panic, and a flag
// reported unset has no value.
func FuzzFlagValue(f *testing.F) {
	f.Add("--profiling=false", "--anonymous-auth", "--profiling")
	f.Add("--audit-log-path", "/x", "--audit-log-path")
	f.Add("--", "--", "--")
	f.Fuzz(func(t *testing.T, a, b, flag string) {
		v, set := flagValue([]string{a, b}, flag)
		if !set && v != "" {
			t.Errorf("unset flag %q has value %q", flag, v)
		}
		componentFlagList(map[string]any{"kind": "Pod", "spec": map[string]any{"containers": []any{
			map[string]any{"command": []any{"etcd", a, b}}}}}, "etcd", flag)
	})
}
