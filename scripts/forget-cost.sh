#!/usr/bin/env bash
# What one Forget costs on a data directory of many users: the bytes the server writes
# (/proc/PID/io write_bytes, which counts what reaches the block layer) and the time the CLI
# call takes end to end (its own start included), for a user the server never saw and for a
# known one, against a Profile.Get of a stranger as the round trip's floor.
#
#   scripts/forget-cost.sh [USERS]     default 1000000 (about 3 events each, 1% explicit)
#
# Builds the release binary, fills a temporary data directory through Events.Stream on
# loopback, restarts the server on it (a clean stop: the state is one snapshot), then measures
# five calls of each kind and prints medians. Everything stays on 127.0.0.1 and is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
users="${1:-1000000}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --locked --bin tactful >&2
bin="$target/release/tactful"
work="$(mktemp -d)"
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
addr="127.0.0.1:$port"

# Warnings only: each Forget's audit line would otherwise be counted as bytes written (the log
# file is the server's too).
start() {
    TACTFUL_LOG=warn "$bin" serve --listen "$addr" --admin-listen off --data-dir "$work/data" \
        2>>"$work/serve.log" &
    pid=$!
    for _ in $(seq 1 600); do
        if "$bin" profile get --addr "$addr" --user probe >/dev/null 2>&1; then return; fi
        sleep 0.1
    done
    echo "the server did not start: $(tail -3 "$work/serve.log")" >&2
    exit 1
}
stop() { kill -TERM "$pid"; wait "$pid" || true; pid=""; }

start
echo "== filling $users users" >&2
"$bin" bench --addr "$addr" --events stream --users "$users" --event-count "$((users * 3))" \
    --max-seconds 600 >&2
stop
start
snapshot_mib="$(du -sm "$work/data" | cut -f1)"

written() { awk '/^write_bytes/ {print $2}' "/proc/$pid/io"; }
measure() { # measure LABEL ARGS...: median ms and bytes written over 5 calls
    local label="$1"; shift
    local times=() bytes=()
    for i in 1 2 3 4 5; do
        local before after t0 t1
        sync
        before="$(written)"
        t0="$(date +%s%N)"
        "$bin" "$@" --addr "$addr" --user "$(printf "$USER_FMT" "$i")" >/dev/null
        t1="$(date +%s%N)"
        sleep 0.2
        after="$(written)"
        times+=("$(( (t1 - t0) / 1000 ))")
        bytes+=("$(( after - before ))")
    done
    python3 - "$label" "${times[*]}" "${bytes[*]}" <<'PY'
import statistics, sys
label, times, written = sys.argv[1], [int(x) for x in sys.argv[2].split()], [int(x) for x in sys.argv[3].split()]
print(f"| {label} | {statistics.median(times) / 1000:.1f} ms | {statistics.median(written):,} bytes | {max(written):,} bytes |")
PY
}
echo
echo "data directory: $users users, $snapshot_mib MiB"
echo
echo "| call (CLI, end to end) | median time | median written | most written |"
echo "|---|---:|---:|---:|"
USER_FMT="stranger-%d" measure "Profile.Get, a stranger (the floor)" profile get
USER_FMT="stranger-%d" measure "Forget, a user never seen" profile forget
USER_FMT="bench-user-%d" measure "Forget, a known user" profile forget
