package rules

import (
	"path"
	"strings"
)

// Command-line helpers of the control-plane checks. Static Pods carry a
// component's configuration as flags in spec.containers[*].command and
// args; reading them here, the way the binary parses them, lets CIS section
// 1-2 checks be ordinary expressions. They use no regular expressions and
// keep nothing between calls.

// componentArgs returns the command-line arguments (after the executable)
// of the first container of obj that runs component, and whether one does.
func componentArgs(obj map[string]any, component string) ([]string, bool) {
	_, args, ok := componentContainer(obj, component)
	return args, ok
}

// componentContainer finds the first container of obj that runs component
// and returns it with its arguments. A container runs component when the
// basename of its command's first element is the component (kubeadm writes
// "kube-apiserver", other installers an absolute path), or, when it has no
// command and so runs its image's entrypoint, when the container is named
// after it.
func componentContainer(obj map[string]any, component string) (map[string]any, []string, bool) {
	for _, c := range asSlice(podSpec(obj)["containers"]) {
		m := asMap(c)
		cmd := strs(m["command"])
		var args []string
		switch {
		case len(cmd) > 0 && path.Base(cmd[0]) == component:
			args = cmd[1:]
		case len(cmd) == 0 && m["name"] == component:
		default:
			continue
		}
		return m, append(args[:len(args):len(args)], strs(m["args"])...), true
	}
	return nil, nil, false
}

// componentSetting is the value of flag for component and whether it is
// set. etcd also reads every flag from an environment variable (--cert-file
// from ETCD_CERT_FILE) and lets the flag win when both are given, so for
// etcd a literal env value counts when the flag is absent; one taken from a
// Secret or ConfigMap (valueFrom) is not visible here and counts as unset.
func componentSetting(obj map[string]any, component, flag string) (string, bool) {
	c, args, _ := componentContainer(obj, component)
	if v, set := flagValue(args, flag); set || component != "etcd" {
		return v, set
	}
	name := "ETCD_" + strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(flag, "--"), "-", "_"))
	val, set := "", false
	for _, e := range asSlice(c["env"]) { // the last entry of a name wins, as in the kubelet
		if m := asMap(e); m["name"] == name {
			val, set = "", false
			if v, ok := m["value"].(string); ok && m["valueFrom"] == nil {
				val, set = v, true
			}
		}
	}
	return val, set
}

// flagValue returns the value of flag (written with its dashes, as in
// "--anonymous-auth") among args, and whether it is set. The last occurrence
// wins, as in the binaries' flag parser. "--flag=value" and "--flag value"
// both set it; a flag with no value ("--profiling" last on the line or
// followed by another flag) reads "true", as a boolean flag does. A
// "--flag value" pair whose flag is boolean would be read as that value; the
// components refuse positional arguments, so such a line does not start.
func flagValue(args []string, flag string) (string, bool) {
	val, set := "", false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break // everything after is positional
		}
		if !strings.HasPrefix(a, flag) {
			continue
		}
		switch rest := a[len(flag):]; {
		case rest == "" && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-"):
			val, set = args[i+1], true
			i++
		case rest == "":
			val, set = "true", true
		case rest[0] == '=':
			val, set = rest[1:], true
		}
	}
	return val, set
}

// componentFlag is flag(object, component, flag): the flag's value on the
// component's command line, "" when the component or the flag is absent.
func componentFlag(obj map[string]any, component, flag string) string {
	v, _ := componentSetting(obj, component, flag)
	return v
}

// hasComponentFlag is has_flag(object, component, flag).
func hasComponentFlag(obj map[string]any, component, flag string) bool {
	_, set := componentSetting(obj, component, flag)
	return set
}

// componentFlagList is flag_list(object, component, flag): a comma-separated
// flag value split into its trimmed, non-empty elements, so membership
// tests (`"RBAC" in flag_list(...)`) do not match substrings such as
// "NodeRestriction" for "Node".
func componentFlagList(obj map[string]any, component, flag string) []string {
	var out []string
	for _, e := range strings.Split(componentFlag(obj, component, flag), ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}
