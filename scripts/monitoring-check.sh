#!/usr/bin/env bash
# Checks the alert rules and the dashboard of k8s/monitoring offline; scripts/test.sh runs it.
#
#   scripts/monitoring-check.sh           check
#   scripts/monitoring-check.sh --write   regenerate prometheusrule.yaml from rules.yml
#
#  1. promtool (Debian's `prometheus` package, installed with apt-get when missing):
#     `promtool check rules` on rules.yml, then `promtool test rules` on rules.test.yml;
#     the dashboard's queries, as recording rules, through `promtool check rules` too;
#  2. prometheusrule.yaml is exactly what --write makes of rules.yml (the manifest's spec is
#     the rules file), so the two cannot drift; tests/monitoring.rs checks the same, and that
#     every metric the rules and the dashboard use is one src/metrics.rs exports;
#  3. the kustomization renders (with the kubectl of scripts/check-k8s.sh's tool venv, when
#     that exists).
# Quiet on success (one line); on failure, what failed and a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=k8s/monitoring
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fail() {
    echo "monitoring-check: $*" >&2
    exit 1
}

# The PrometheusRule: a fixed header, then rules.yml from `groups:` on, indented under spec.
generate() {
    cat <<'HEADER'
# Generated from rules.yml by scripts/monitoring-check.sh --write: edit rules.yml, then
# regenerate. A prometheus-operator PrometheusRule with the same groups, for
# kubectl apply -k k8s/monitoring.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: tactful
  labels:
    app.kubernetes.io/name: tactful
spec:
HEADER
    sed -n '/^groups:/,$p' "$dir/rules.yml" | sed 's/^\(.\)/  \1/'
}

if [ "${1:-}" = "--write" ]; then
    generate >"$dir/prometheusrule.yaml"
    echo "monitoring-check: wrote $dir/prometheusrule.yaml"
    exit 0
fi

# 1. promtool.
if ! command -v promtool >/dev/null; then
    echo "== installing promtool (Debian package prometheus)" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
    # Without a package list (a fresh machine) the install finds nothing: update first.
    "${sudo[@]}" apt-get update -qq >"$work/apt" 2>&1 || { cat "$work/apt" >&2; fail "apt-get update failed"; }
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus \
        >"$work/apt" 2>&1 || { cat "$work/apt" >&2; fail "apt-get install prometheus failed"; }
    command -v promtool >/dev/null || fail "the prometheus package installed no promtool"
fi
promtool check rules "$dir/rules.yml" >"$work/out" 2>&1 || { cat "$work/out" >&2; fail "promtool check rules failed"; }
rules="$(sed -n 's/.*SUCCESS: \([0-9]*\) rules found.*/\1/p' "$work/out")"
(cd "$dir" && promtool test rules rules.test.yml) >"$work/out" 2>&1 ||
    { cat "$work/out" >&2; fail "promtool test rules failed"; }
tests="$(grep -c '^  - interval:' "$dir/rules.test.yml")"

# The dashboard's queries must parse as PromQL: each becomes a recording rule (Grafana's
# variables replaced by values) for promtool to check.
python3 - "$dir/tactful-dashboard.json" >"$work/dashboard-rules.yml" <<'PY' || fail "cannot read the dashboard"
import json, sys
dashboard = json.load(open(sys.argv[1]))
print("groups:\n  - name: dashboard\n    rules:")
n = 0
for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
        expr = (target["expr"].replace("$__rate_interval", "5m")
                .replace("$job", ".*").replace("$instance", ".*"))
        n += 1
        print(f"      - record: dashboard:query{n}\n        expr: {json.dumps(expr)}")
PY
promtool check rules "$work/dashboard-rules.yml" >"$work/out" 2>&1 ||
    { cat "$work/out" >&2; fail "a query of the dashboard is not valid PromQL"; }
queries="$(sed -n 's/.*SUCCESS: \([0-9]*\) rules found.*/\1/p' "$work/out")"

# 2. The manifest is the rules file.
generate >"$work/prometheusrule.yaml"
if ! diff -u "$dir/prometheusrule.yaml" "$work/prometheusrule.yaml" >"$work/diff"; then
    cat "$work/diff" >&2
    fail "$dir/prometheusrule.yaml differs from rules.yml: run scripts/monitoring-check.sh --write"
fi

# 3. Render.
rendered="not rendered (no target/k8s-tools; scripts/check-k8s.sh makes it)"
if [ -x target/k8s-tools/bin/kubectl ]; then
    target/k8s-tools/bin/kubectl kustomize "$dir" -o "$work/monitoring.yaml" 2>"$work/out" ||
        { cat "$work/out" >&2; fail "kubectl kustomize $dir failed"; }
    for kind in PrometheusRule ConfigMap; do
        grep -q "^kind: $kind\$" "$work/monitoring.yaml" || fail "kubectl kustomize $dir renders no $kind"
    done
    rendered="renders"
fi

echo "monitoring-check: ok: promtool check rules ($rules rules), promtool test rules ($tests cases);" \
    "the dashboard's $queries queries parse; prometheusrule.yaml matches rules.yml; $dir $rendered"
