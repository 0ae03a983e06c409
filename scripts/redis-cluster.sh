#!/usr/bin/env bash
# A small Redis Cluster for the tests of the shared state backend: three masters and a replica
# each, on loopback.
#
#   scripts/redis-cluster.sh [--record FILE]  installs `redis-server` (Debian package) if it is
#                                             missing, starts six nodes on 127.0.0.1:7390-7395
#                                             unless a healthy cluster already answers on 7390,
#                                             makes them one cluster (redis-cli --cluster
#                                             create, one replica per master), waits until
#                                             every slot is served and every replica is in
#                                             sync, and prints the backend URL on stdout
#                                             (redis-cluster://<the masters' seeds>; everything
#                                             else goes to stderr). With --record, FILE receives
#                                             the cluster's directory if (and only if) this run
#                                             started it; it is left empty otherwise.
#   scripts/redis-cluster.sh stop DIR         shuts down the nodes started with that directory,
#                                             and nothing else, then removes DIR.
#
# TACTFUL_TEST_REDIS_CLUSTER_PORT picks the first port (the nodes take it and the next five).
# Each node keeps its data in DIR/<port>/ with every write fsynced (appendfsync always) and a
# short cluster-node-timeout (1 s), so that a test that fails a master over does not wait long;
# DIR/ports and each node's redis.pid are how `stop` knows the nodes are the ones it started.
set -euo pipefail

# The pid of the redis-server started in DIR/PORT, if it still runs.
pid_of() {
    local dir="$1" pid
    [ -f "$dir/redis.pid" ] || return 1
    pid="$(cat "$dir/redis.pid")"
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "redis-server" ] || return 1
    echo "$pid"
}

stop() {
    local dir="$1" port pid answering failed=0
    if [ ! -f "$dir/ports" ]; then
        echo "redis-cluster.sh stop: $dir was not made by redis-cluster.sh (no ports file);" \
            "nothing stopped" >&2
        exit 1
    fi
    echo "== stopping the redis cluster started in $dir" >&2
    for port in $(cat "$dir/ports"); do
        pid="$(pid_of "$dir/$port")" || continue
        # Ask the server on the port to shut down only if it is the process started here.
        answering="$(redis-cli -p "$port" info server 2>/dev/null | tr -d '\r' |
            sed -n 's/^process_id://p')"
        if [ "$answering" = "$pid" ]; then
            redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
        else
            kill "$pid" 2>/dev/null || true
        fi
    done
    for port in $(cat "$dir/ports"); do
        pid="$(pid_of "$dir/$port")" || continue
        for _ in $(seq 1 50); do
            if ! kill -0 "$pid" 2>/dev/null; then break; fi
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "redis-server $pid (port $port) did not stop; its data stays in $dir" >&2
            failed=1
        fi
    done
    [ "$failed" -eq 0 ] || exit 1
    rm -rf -- "$dir"
}

# Whether the cluster answering on PORT serves every slot.
healthy() {
    redis-cli -p "$1" cluster info 2>/dev/null | tr -d '\r' | grep -qx 'cluster_state:ok'
}

if [ "${1:-}" = "stop" ]; then
    [ $# -eq 2 ] || { echo "usage: scripts/redis-cluster.sh stop DIR" >&2; exit 64; }
    stop "$2"
    exit 0
fi

record=""
if [ "${1:-}" = "--record" ]; then
    [ $# -eq 2 ] || { echo "usage: scripts/redis-cluster.sh [--record FILE]" >&2; exit 64; }
    record="$2"
    : >"$record"
elif [ $# -ne 0 ]; then
    echo "usage: scripts/redis-cluster.sh [--record FILE] | scripts/redis-cluster.sh stop DIR" >&2
    exit 64
fi

base="${TACTFUL_TEST_REDIS_CLUSTER_PORT:-7390}"
ports="$(seq "$base" $((base + 5)))"
seeds="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "== installing redis-server" >&2
    export DEBIAN_FRONTEND=noninteractive
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq >&2
    $sudo apt-get install -y -qq --no-install-recommends redis-server >&2
fi

if healthy "$base"; then
    echo "== reusing the redis cluster already answering on 127.0.0.1:$base (left running)" >&2
    echo "redis-cluster://$seeds"
    exit 0
fi
for port in $ports; do
    if redis-cli -p "$port" ping >/dev/null 2>&1; then
        echo "something already answers on 127.0.0.1:$port and it is not a healthy cluster;" \
            "stop it or set TACTFUL_TEST_REDIS_CLUSTER_PORT" >&2
        exit 1
    fi
done

dir="$(mktemp -d "${TMPDIR:-/tmp}/tactful-redis-cluster-$base.XXXXXX")"
echo "$ports" >"$dir/ports"
# Known as started here from now on, so the caller stops it even if it never gets healthy.
if [ -n "$record" ]; then echo "$dir" >"$record"; fi
echo "== starting a redis cluster on 127.0.0.1:$base-$((base + 5)) (data in $dir)" >&2
for port in $ports; do
    mkdir "$dir/$port"
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$dir/$port" \
        --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log" \
        --save '' --appendonly yes --appendfsync always \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 1000 >&2
done
for port in $ports; do
    for _ in $(seq 1 50); do
        if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
        sleep 0.1
    done
    if ! redis-cli -p "$port" ping >/dev/null 2>&1; then
        echo "redis-server did not answer on port $port; its log:" >&2
        cat "$dir/$port/redis.log" >&2 || true
        exit 1
    fi
done
# shellcheck disable=SC2046
redis-cli --cluster create $(for p in $ports; do echo "127.0.0.1:$p"; done) \
    --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 || {
    echo "redis-cli --cluster create failed:" >&2
    cat "$dir/create.log" >&2
    exit 1
}
# Every node sees every slot served, and every replica is in sync with its master (a write
# that waits for one replica must not fail because the cluster was just made).
for _ in $(seq 1 100); do
    ready=1
    for port in $ports; do
        info="$(redis-cli -p "$port" info replication 2>/dev/null | tr -d '\r')"
        if ! healthy "$port"; then ready=0; fi
        if echo "$info" | grep -qx 'role:slave' &&
            ! echo "$info" | grep -qx 'master_link_status:up'; then ready=0; fi
    done
    if [ "$ready" -eq 1 ]; then break; fi
    sleep 0.1
done
if [ "$ready" -ne 1 ]; then
    echo "the redis cluster did not become healthy in 10 s; node logs in $dir" >&2
    exit 1
fi

echo "redis-cluster://$seeds"
