#!/usr/bin/env bash
# A Redis for the tests of the shared state backend: installs `redis-server` (Debian package)
# if it is missing, starts it on 127.0.0.1:6390 unless something there already answers PING,
# and prints its URL on stdout (everything else goes to stderr). Safe to run again and again.
#
# The port is not Redis' default (6379) so that the tests never touch a Redis the machine
# runs for something else; the data lives in a temporary directory, with every write fsynced
# (appendfsync always) as a production setup for users' explicit words would have it.
set -euo pipefail

port="${TACTFUL_TEST_REDIS_PORT:-6390}"

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "== installing redis-server" >&2
    export DEBIAN_FRONTEND=noninteractive
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq >&2
    $sudo apt-get install -y -qq --no-install-recommends redis-server >&2
fi

if ! redis-cli -p "$port" ping >/dev/null 2>&1; then
    dir="$(mktemp -d "${TMPDIR:-/tmp}/tactful-redis-$port.XXXXXX")"
    echo "== starting redis-server on 127.0.0.1:$port (data in $dir)" >&2
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$dir" \
        --logfile "$dir/redis.log" --save '' --appendonly yes --appendfsync always >&2
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
