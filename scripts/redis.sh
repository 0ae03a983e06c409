#!/usr/bin/env bash
# A Redis for the tests of the shared state backend.
#
#   scripts/redis.sh [--record FILE]   installs `redis-server` (Debian package) if it is missing,
#                                      starts it on 127.0.0.1:6390 unless something there already
#                                      answers PING, and prints its URL on stdout (everything else
#                                      goes to stderr). Safe to run again and again. With
#                                      --record, FILE receives the server's directory if (and
#                                      only if) this run started it; it is left empty otherwise.
#   scripts/redis.sh stop DIR          shuts down the server started with that directory, and
#                                      nothing else: a Redis this script did not start is never
#                                      touched. Then removes DIR.
#
# The port is not Redis' default (6379) so that the tests never touch a Redis the machine
# runs for something else (TACTFUL_TEST_REDIS_PORT picks another); the data lives in a
# temporary directory, with every write fsynced (appendfsync always) as a production setup for
# users' explicit words would have it. The directory also holds `port` and `redis.pid`, which
# is how `stop` knows the server is the one it started.
set -euo pipefail

# The pid of the redis-server started in DIR, if it still runs.
pid_of() {
    local dir="$1" pid
    [ -f "$dir/redis.pid" ] || return 1
    pid="$(cat "$dir/redis.pid")"
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "redis-server" ] || return 1
    echo "$pid"
}

stop() {
    local dir="$1" port pid answering
    if [ ! -f "$dir/port" ]; then
        echo "redis.sh stop: $dir was not made by redis.sh (no port file); nothing stopped" >&2
        exit 1
    fi
    port="$(cat "$dir/port")"
    if pid="$(pid_of "$dir")"; then
        # Ask the server on the port to shut down only if it is the process started here.
        answering="$(redis-cli -p "$port" info server 2>/dev/null | tr -d '\r' |
            sed -n 's/^process_id://p')"
        if [ "$answering" = "$pid" ]; then
            echo "== stopping the redis-server started on 127.0.0.1:$port" >&2
            redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
        else
            kill "$pid" 2>/dev/null || true
        fi
        for _ in $(seq 1 50); do
            if ! kill -0 "$pid" 2>/dev/null; then break; fi
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "redis-server $pid (port $port) did not stop; its data stays in $dir" >&2
            exit 1
        fi
    fi
    rm -rf -- "$dir"
}

if [ "${1:-}" = "stop" ]; then
    [ $# -eq 2 ] || { echo "usage: scripts/redis.sh stop DIR" >&2; exit 64; }
    stop "$2"
    exit 0
fi

record=""
if [ "${1:-}" = "--record" ]; then
    [ $# -eq 2 ] || { echo "usage: scripts/redis.sh [--record FILE]" >&2; exit 64; }
    record="$2"
    : >"$record"
elif [ $# -ne 0 ]; then
    echo "usage: scripts/redis.sh [--record FILE] | scripts/redis.sh stop DIR" >&2
    exit 64
fi

port="${TACTFUL_TEST_REDIS_PORT:-6390}"

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "== installing redis-server" >&2
    export DEBIAN_FRONTEND=noninteractive
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq >&2
    $sudo apt-get install -y -qq --no-install-recommends redis-server >&2
fi

if redis-cli -p "$port" ping >/dev/null 2>&1; then
    echo "== reusing the redis already answering on 127.0.0.1:$port (left running)" >&2
else
    dir="$(mktemp -d "${TMPDIR:-/tmp}/tactful-redis-$port.XXXXXX")"
    echo "$port" >"$dir/port"
    echo "== starting redis-server on 127.0.0.1:$port (data in $dir)" >&2
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$dir" \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
        --save '' --appendonly yes --appendfsync always >&2
    # Known as started here from now on, so the caller stops it even if it never answers.
    if [ -n "$record" ]; then echo "$dir" >"$record"; fi
    for _ in $(seq 1 50); do
        if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
        sleep 0.1
    done
    if ! redis-cli -p "$port" ping >/dev/null 2>&1; then
        echo "redis-server did not answer on port $port; its log:" >&2
        cat "$dir/redis.log" >&2 || true
        exit 1
    fi
fi

echo "redis://127.0.0.1:$port/0"
