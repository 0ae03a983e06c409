#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every unit, integration and doc test (benches
# are built and run once each in test mode, so they cannot rot). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# The shared-state tests need a Redis and a Redis Cluster: scripts/redis.sh installs and
# starts one Redis on loopback, scripts/redis-cluster.sh a cluster of six nodes (or set
# TACTFUL_TEST_REDIS, TACTFUL_TEST_REDIS_CLUSTER to use others). Tests that need them fail in CI
# without them. What these scripts start here is shut down when this script exits, however it
# exits; what already answered on their ports is reused and left running, as are the ones the
# variables name.
redis_started="$(mktemp "${TMPDIR:-/tmp}/tactful-redis-started.XXXXXX")"
cluster_started="$(mktemp "${TMPDIR:-/tmp}/tactful-redis-cluster-started.XXXXXX")"
stop_redis() {
    if [ -s "$redis_started" ]; then ./scripts/redis.sh stop "$(cat "$redis_started")" || true; fi
    if [ -s "$cluster_started" ]; then
        ./scripts/redis-cluster.sh stop "$(cat "$cluster_started")" || true
    fi
    rm -f "$redis_started" "$cluster_started"
}
trap stop_redis EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [ -z "${TACTFUL_TEST_REDIS:-}" ]; then
    echo "== redis for the shared-state tests"
    TACTFUL_TEST_REDIS="$(./scripts/redis.sh --record "$redis_started")"
fi
export TACTFUL_TEST_REDIS
if [ -z "${TACTFUL_TEST_REDIS_CLUSTER:-}" ]; then
    echo "== a redis cluster for the shared-state tests"
    TACTFUL_TEST_REDIS_CLUSTER="$(./scripts/redis-cluster.sh --record "$cluster_started")"
fi
export TACTFUL_TEST_REDIS_CLUSTER

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== kubernetes manifests"
./scripts/check-k8s.sh

echo "== alert rules and dashboard (promtool)"
./scripts/monitoring-check.sh

echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo check --features otlp (trace export must keep compiling)"
cargo check --locked --features otlp

echo "== cargo check --features system-allocator (the allocator comparison must keep compiling)"
cargo check --locked --features system-allocator

echo "== cargo test"
cargo test --all-targets --locked
cargo test --doc --locked

echo "== python client (stubs, pip install, pytest against the real binary)"
./scripts/python-client-test.sh

echo "== the server's integration tests again, with user state in redis"
TACTFUL_TEST_STATE=redis cargo test --locked --test user_state --test ranking --test validation \
    --test fail_open

echo "== the same, with user state on the redis cluster"
TACTFUL_TEST_STATE=redis TACTFUL_TEST_REDIS="$TACTFUL_TEST_REDIS_CLUSTER" cargo test --locked \
    --test user_state --test ranking --test validation --test fail_open
