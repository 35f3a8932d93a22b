#!/usr/bin/env python3
"""Summarize a posture scanner's report against the planted fixture.

Usage: summarize.py TOOL EXPECTED_YAML REPORT RUN_PREFIX OUT_JSON VERSION TIMES_TSV

TOOL is polaris (REPORT: `polaris audit --format json`) or kubesift (REPORT:
`kubesift posture scan -o json`, one finding per line).

TIMES_TSV has one line per timed scan: /usr/bin/time -v's wall clock
([h:]m:ss.ss), maximum resident set size (KiB) and user+system CPU seconds,
tab-separated. The CPU time is the steadier figure on a shared machine.

Each failed Polaris check on a planted object is mapped to a theme of
testdata/expected.yaml through POLARIS_THEMES below (checks with no theme
are "other"); each kubesift finding through expected.yaml's kubesift_checks,
else by its CIS id and the kinds of the theme's scope (as
scan_realapi_test.go does). Per theme it prints which planted violations the
tool reported, which it missed, and where it reported the theme although
expected.yaml says it must not fire. hack/posture-compare.sh runs it; the
tables it prints are those docs/posture-compare.md shows.
"""
import json
import sys

import yaml

# Polaris check id -> fixture theme. The mapping is by meaning, read from the
# checks' schemas in Polaris's source (pkg/config/checks/*.yaml):
# insecureCapabilities fails when a container does not drop ALL (or the whole
# insecure list), dangerousCapabilities when it adds ALL, SYS_ADMIN or
# NET_ADMIN, linuxHardening when no seccomp profile, AppArmor, SELinux or
# dropped capabilities restrict the container. missingNetworkPolicy is judged
# per workload (is there a NetworkPolicy selecting it by label, with ingress
# and egress rules), so it is credited to the workload's namespace.
# sensitiveContainerEnvVar looks at literal env values with secret-like
# names, not at secretKeyRef, so it is not secret-env (CIS 5.4.1).
POLARIS_THEMES = {
    "runAsPrivileged": "privileged-container",
    "hostPIDSet": "host-pid",
    "hostIPCSet": "host-ipc",
    "hostNetworkSet": "host-network",
    "privilegeEscalationAllowed": "privilege-escalation",
    "runAsRootAllowed": "root-container",
    "dangerousCapabilities": "added-capabilities",
    "insecureCapabilities": "capabilities-not-dropped",
    "hostPathSet": "host-path",
    "hostPortSet": "host-port",
    "linuxHardening": "seccomp",
    "tagNotSpecified": "mutable-tag",
    "cpuLimitsMissing": "no-resource-limits",
    "memoryLimitsMissing": "no-resource-limits",
    "automountServiceAccountToken": "token-automount",
    "missingNetworkPolicy": "no-network-policy",
    "clusterrolebindingClusterAdmin": "cluster-admin-binding",
    "rolebindingClusterAdminClusterRole": "cluster-admin-binding",
    "rolebindingClusterAdminRole": "cluster-admin-binding",
}
# Themes Polaris reports on another object than the fixture expects.
ON_NAMESPACE = {"no-network-policy"}


def key(kind, ns, name):
    return f"{kind} {ns}/{name}" if ns else f"{kind} {name}"


def failed_checks(result):
    """Yield the ids of the failed checks of one Polaris result, at every level."""
    levels = [result.get("Results") or {}]
    pod = result.get("PodResult") or {}
    levels.append(pod.get("Results") or {})
    for c in pod.get("ContainerResults") or []:
        levels.append(c.get("Results") or {})
    for level in levels:
        for check_id, r in level.items():
            if not r.get("Success", True):
                yield check_id


def seconds(wall):
    """[h:]m:ss.ss -> seconds."""
    total = 0.0
    for part in wall.split(":"):
        total = total * 60 + float(part)
    return total


def read_times(path):
    runs = []
    with open(path) as f:
        for line in f:
            wall, rss, cpu = line.strip().split("\t")
            runs.append({"wall_seconds": round(seconds(wall), 2), "cpu_seconds": round(float(cpu), 2),
                         "max_rss_mib": round(int(rss) / 1024, 1)})
    return runs


def polaris_reported(report_path, objects):
    """Object key -> themes Polaris reported; check id -> planted objects for
    checks with no theme; how many results were outside the fixture; how many
    results in all."""
    with open(report_path) as f:
        report = json.load(f)
    reported, other, seen_outside = {}, {}, 0
    for r in report.get("Results") or []:
        k = key(r.get("Kind", ""), r.get("Namespace", ""), r.get("Name", ""))
        if k not in objects:
            seen_outside += 1
            continue
        for check_id in set(failed_checks(r)):
            t = POLARIS_THEMES.get(check_id)
            if t is None:
                other.setdefault(check_id, set()).add(k)
                continue
            target = key("Namespace", "", r.get("Namespace", "")) if t in ON_NAMESPACE else k
            reported.setdefault(target, set()).add(t)
    return reported, other, seen_outside, len(report.get("Results") or [])


def kubesift_themes(exp, finding):
    """The fixture themes of one `posture scan -o json` finding."""
    t = (exp.get("kubesift_checks") or {}).get(finding["check_id"])
    if t:
        return [t]
    kind = finding["object"]["kind"]
    return [name for name, th in exp["themes"].items()
            if th["cis"] and th["cis"] in (finding.get("cis") or []) and kind in exp["scopes"][th["scope"]]]


def kubesift_reported(report_path, objects, exp):
    reported, other, seen_outside, total = {}, {}, 0, 0
    with open(report_path) as f:
        for line in f:
            if not line.strip():
                continue
            total += 1
            finding = json.loads(line)
            o = finding["object"]
            k = key(o["kind"], o.get("namespace", ""), o["name"])
            if k not in objects:
                seen_outside += 1
                continue
            themes = kubesift_themes(exp, finding)
            if not themes:
                other.setdefault(finding["check_id"], set()).add(k)
            for t in themes:
                reported.setdefault(k, set()).add(t)
    return reported, other, seen_outside, total


def main():
    tool, expected_path, report_path, run, out_path, version, times_path = sys.argv[1:8]
    with open(expected_path) as f:
        exp = yaml.safe_load(f)

    objects = {}
    for e in exp["objects"] + exp.get("preexisting", []):
        k = key(e["kind"], e.get("namespace", ""), e["name"]).replace("__RUN__", run)
        objects[k] = e
    themes = exp["themes"]
    summary = {t: {"cis": themes[t]["cis"], "planted": [], "reported": [], "missed": [], "must_not": []} for t in themes}
    for k, e in objects.items():
        for t in e.get("fire") or []:
            summary[t]["planted"].append(k)

    if tool == "polaris":
        reported, other, seen_outside, results_total = polaris_reported(report_path, objects)
    elif tool == "kubesift":
        reported, other, seen_outside, results_total = kubesift_reported(report_path, objects, exp)
    else:
        sys.exit(f"unknown tool {tool!r}: polaris or kubesift")

    for k, ts in reported.items():
        e = objects.get(k, {"fire": [], "may_fire": []})
        for t in ts:
            if t in (e.get("fire") or []):
                summary[t]["reported"].append(k)
            elif t not in (e.get("may_fire") or []) and k in objects:
                summary[t]["must_not"].append(k)
    for t, s in summary.items():
        s["missed"] = sorted(set(s["planted"]) - set(s["reported"]))
        for field in ("planted", "reported", "must_not"):
            s[field] = sorted(set(s[field]))

    out = {
        "tool": tool,
        "version": version,
        "runs": read_times(times_path),
        "results_total": results_total,
        "run_prefix": run,
        "themes": summary,
        "other_checks": {c: sorted(v) for c, v in sorted(other.items())},
        "results_outside_fixture": seen_outside,
    }
    with open(out_path, "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
        f.write("\n")
    print_table(out)


def cis_order(item):
    """CIS items in numeric order (5.1.2 before 5.1.10), the programme's after."""
    name, theme = item
    cis = [int(p) for p in theme["cis"].split(".")] if theme["cis"] else []
    return (not cis, cis, name)


def print_table(out):
    for i, r in enumerate(out["runs"], 1):
        print(f"scan {i}: wall {r['wall_seconds']} s, CPU {r['cpu_seconds']} s, max RSS {r['max_rss_mib']} MiB")
    print(f"{out['tool']} {out['version']}: {out['results_total']} results in all, "
          f"{out['results_outside_fixture']} on objects outside the fixture (not counted below)")
    print()
    print("| theme | CIS | planted | reported | missed | reported where it must not fire |")
    print("|---|---|---|---|---|---|")
    for t, s in sorted(out["themes"].items(), key=cis_order):
        print(f"| {t} | {s['cis'] or '-'} | {len(s['planted'])} | {len(s['reported'])} | {len(s['missed'])} | {len(s['must_not'])} |")
    print()
    print(f"{out['tool']} checks with no fixture theme, failed on planted objects:")
    for c, objs in out["other_checks"].items():
        print(f"  {c}: {len(objs)}")


if __name__ == "__main__":
    main()
