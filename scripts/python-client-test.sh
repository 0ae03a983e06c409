#!/usr/bin/env bash
# Checks and tests the Python client (clients/python); scripts/test.sh runs it. Needs python3,
# PyPI (for the tools, once) and cargo.
#
#   scripts/python-client-test.sh           check and test
#   scripts/python-client-test.sh --write   regenerate the stubs from proto/
#
#  1. tools: a venv in target/python-client with clients/python/requirements-test.txt, made on
#     first use and whenever that list changes;
#  2. the stubs committed in clients/python/src/tactful/v1 are exactly what grpcio-tools
#     generates from proto/ (so a proto change without regenerated stubs fails here);
#  3. a fresh venv gets `pip install ./clients/python` (which requires grpcio and protobuf only), and
#     the package is installed into the tools venv too;
#  4. pytest of clients/python/tests against the real server binary (TACTFUL_BIN, else
#     target/debug/tactful, built if needed); the five-line example runs in the fresh venv.
# Quiet on success (pytest's summary line); on failure, what failed and a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/python-client
requirements=clients/python/requirements-test.txt
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fail() {
    echo "python-client-test: $*" >&2
    exit 1
}

quietly() {
    local what="$1"
    shift
    if ! "$@" >"$work/out" 2>&1; then
        cat "$work/out" >&2
        fail "$what failed"
    fi
}

# 1. Tools. The stamp is written last, so an interrupted install is redone.
if [ "$(cat "$venv/installed.txt" 2>/dev/null)" != "$(cat "$requirements")" ]; then
    rm -rf "$venv"
    quietly "creating the venv $venv" python3 -m venv "$venv"
    quietly "installing $requirements" \
        "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$requirements"
    cp "$requirements" "$venv/installed.txt"
fi

generate() {
    mkdir -p "$1"
    "$venv/bin/python" -m grpc_tools.protoc -Iproto --python_out="$1" --pyi_out="$1" \
        --grpc_python_out="$1" proto/tactful/v1/*.proto
}

stubs=clients/python/src/tactful/v1
if [ "${1:-}" = "--write" ]; then
    rm -f "$stubs"/*_pb2*.py "$stubs"/*_pb2*.pyi
    generate clients/python/src
    echo "python-client-test: regenerated $stubs"
    exit 0
fi

# 2. The committed stubs are what grpcio-tools makes of proto/.
quietly "grpcio-tools on proto/" generate "$work/gen"
(cd "$work/gen/tactful/v1" && ls) >"$work/generated"
(cd "$stubs" && ls -- *_pb2*) >"$work/committed"
if ! diff -u "$work/committed" "$work/generated" >/dev/null; then
    diff -u "$work/committed" "$work/generated" >&2 || true
    fail "the stub files differ from what proto/ generates: run scripts/python-client-test.sh --write"
fi
while read -r f; do
    if ! cmp -s "$stubs/$f" "$work/gen/tactful/v1/$f"; then
        diff -u "$stubs/$f" "$work/gen/tactful/v1/$f" | head -20 >&2 || true
        fail "$stubs/$f is not what grpcio-tools generates from proto/: run scripts/python-client-test.sh --write"
    fi
done <"$work/generated"

# 3. Install: into a fresh venv (only what the package declares) and into the tools venv, from
# a copy (setuptools writes build/ and *.egg-info next to the sources it builds).
cp -r clients/python "$work/pkg"
rm -rf "$work/pkg/build" "$work/pkg"/src/*.egg-info
quietly "creating a fresh venv" python3 -m venv "$work/fresh"
quietly "pip install ./clients/python (fresh venv)" \
    "$work/fresh/bin/pip" install --quiet --disable-pip-version-check --no-input "$work/pkg"
requires="$("$work/fresh/bin/pip" show --disable-pip-version-check tactful | sed -n 's/^Requires: //p')"
[ "$requires" = "grpcio, protobuf" ] ||
    fail "the package requires $requires, not grpcio and protobuf only"
quietly "pip install ./clients/python (tools venv)" \
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input --force-reinstall --no-deps "$work/pkg"

# 4. The tests, against the real binary.
if [ -z "${TACTFUL_BIN:-}" ]; then
    quietly "cargo build --bin tactful" cargo build --locked --quiet --bin tactful
    TACTFUL_BIN="$PWD/${CARGO_TARGET_DIR:-target}/debug/tactful"
fi
export TACTFUL_BIN
export TACTFUL_EXAMPLE_PYTHON="$work/fresh/bin/python"
# From the tests' directory, so that `import tactful` finds the installed package, not src/.
(cd clients/python/tests && PYTHONDONTWRITEBYTECODE=1 "$PWD/../../../$venv/bin/python" -m pytest -q \
    -p no:cacheprovider test_client.py >"$work/pytest" 2>&1) || { cat "$work/pytest" >&2; fail "pytest failed"; }
echo "python-client-test: ok: stubs match proto/; pip install ./clients/python needs grpcio and protobuf only;" \
    "$(tail -1 "$work/pytest")"
