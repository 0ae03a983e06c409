#!/usr/bin/env bash
# Checks the Kubernetes manifests (k8s/) and the ghz load-test configs (benches/ghz/) offline;
# scripts/test.sh runs it. Needs python3 and PyPI (for the tools, once) and cargo; no cluster,
# no Docker, no other network.
#
#  1. tools: a venv in target/k8s-tools with the exact versions of scripts/k8s-tools.txt,
#     installed by uv (seconds, where pip takes over 3 minutes) and compiled to bytecode at
#     install time (checkov imports thousands of modules: compiling them on every run, as
#     happens under PYTHONDONTWRITEBYTECODE, would double its time), made on first use and
#     whenever that list or uv's version changes, reused otherwise;
#  2. render: kubectl kustomize of k8s/overlays/sidecar, k8s/overlays/service and k8s/istio;
#  3. schemas: kubernetes-validate --strict against Kubernetes 1.33 (the oldest this targets:
#     native sidecars are GA there) and 1.37 (the newest it knows); unknown fields, and kinds it
#     has no schema for, are failures. The Istio rule is checked by step 5 instead;
#  4. checkov --framework kubernetes on each rendered output, and --framework dockerfile on
#     the Dockerfile (which cannot be built here: no Docker engine): no failed check. Skips are
#     written on what they concern (checkov.io/skipN annotations, a checkov:skip comment in the
#     Dockerfile), each with its reason;
#  5. scripts/check-k8s.py: what only this project knows (drain vs grace, memory cap vs limit,
#     probes vs the services tactful reports, the real binary started on the shipped
#     ConfigMap with the pod's environment, the ghz payloads parsed with the real protos and
#     sent to that server).
#
# Quiet on success (one line); on failure, what failed and why, and a non-zero exit.
# TACTFUL_BIN=path/to/tactful skips the cargo build of step 5.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/k8s-tools
requirements=scripts/k8s-tools.txt
uv_version=0.13.8
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fail() {
    echo "check-k8s: $*" >&2
    exit 1
}

# Runs a command with its output kept aside; shows it only if the command fails.
quietly() {
    local what="$1"
    shift
    if ! "$@" >"$work/out" 2>&1; then
        cat "$work/out" >&2
        fail "$what failed"
    fi
}

# 1. Tools. The stamp is written last, so an interrupted install is redone, not trusted.
stamp="$(printf 'uv==%s\n' "$uv_version"; cat "$requirements")"
if [ "$(cat "$venv/installed.txt" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$venv"
    quietly "creating the venv $venv" python3 -m venv "$venv"
    quietly "installing uv $uv_version" \
        "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input "uv==$uv_version"
    quietly "installing the tools of $requirements" \
        "$venv/bin/uv" pip install --quiet --compile-bytecode --python "$venv/bin/python" \
        -r "$requirements"
    printf '%s\n' "$stamp" >"$venv/installed.txt"
fi
bin="$PWD/$venv/bin"

# 2. Render.
for target in overlays/sidecar overlays/service istio; do
    name="$(basename "$target")"
    quietly "kubectl kustomize k8s/$target" "$bin/kubectl" kustomize "k8s/$target" -o "$work/$name.yaml"
done

# 3. Schemas.
for version in 1.33.0 1.37.0; do
    if ! "$bin/kubernetes-validate" --strict --quiet -k "$version" \
        "$work/sidecar.yaml" "$work/service.yaml" >"$work/out" 2>&1 || [ -s "$work/out" ]; then
        sed "s|$work/\([a-z]*\)\.yaml|k8s/overlays/\1 (rendered)|g" "$work/out" >&2
        fail "the rendered overlays do not validate against Kubernetes $version"
    fi
done

# 4. Checkov, one run for everything (it takes seconds to start). --skip-download: the checks
# ship in the package; nothing is fetched.
cp Dockerfile "$work/Dockerfile"
if ! (cd "$work" && "$bin/checkov" --framework kubernetes dockerfile --skip-download --quiet \
    --compact -f sidecar.yaml -f service.yaml -f istio.yaml -f Dockerfile >"$work/checkov.txt" 2>&1); then
    cat "$work/checkov.txt" >&2
    fail "checkov found problems in the rendered manifests or the Dockerfile (above)"
fi
read -r passed skipped < <(sed -n 's/.*Passed checks: \([0-9]*\), Failed checks: 0, Skipped checks: \([0-9]*\).*/\1 \2/p' \
    "$work/checkov.txt" | awk '{p += $1; s += $2} END {print p + 0, s + 0}')

# 5. The project's own checks, with the real binary.
tactful="${TACTFUL_BIN:-}"
if [ -z "$tactful" ]; then
    quietly "cargo build --bin tactful" cargo build --locked --quiet --bin tactful
    tactful="${CARGO_TARGET_DIR:-target}/debug/tactful"
fi
"$bin/python" scripts/check-k8s.py "$work" "$tactful" || fail "the project's checks found problems (above)"

echo "check-k8s: ok: 3 kustomizations render; overlays valid for Kubernetes 1.33 and 1.37;" \
    "checkov (manifests and Dockerfile) $passed passed, 0 failed, $skipped skipped, each with its reason;" \
    "the shipped config, probes and ghz payloads work with the real binary"
