#!/usr/bin/env bash
# Instructions per Rank call: the release server under callgrind, tactful's own load generator
# sending a fixed payload (N candidates x D-dim embeddings, k 20, one connection, one call at
# a time). After a warm-up the counters are zeroed (callgrind_control -z), CALLS calls are
# made, and the counts dumped (callgrind_control -d): every user-space instruction of the
# server's process, all threads, divided by the calls. Once per case: the default policy and
# identity with `repeated float` embeddings, then both with the bytes form (embedding_f32le);
# last a grpc.health.v1 check, the transport's floor.
#   cargo build --release && ./scripts/per-call.sh            # N=, D=, CALLS=, WARMUP= to change
# Needs valgrind (apt-get install valgrind). Loopback only; about a minute.
#
# MODE=cpu instead measures CPU time per call, from /proc, against the same server's
# grpc.health.v1 check under the same load (the transport's own floor): the server runs
# natively, and for each load (closed loop with 4 clients; open loop evenly paced at 2,000 and
# at 300 req/s) a Rank run (default policy) and a Health/Check run follow each other, RUNS
# rounds (3); it prints each run and the medians' ratio Rank / Health.
#   cargo build --release && MODE=cpu ./scripts/per-call.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100}
D=${D:-64}
CALLS=${CALLS:-1000}
WARMUP=${WARMUP:-200}
PORT=${PORT:-50081}
BIN=${BIN:-target/release/tactful}
# The load generator (another build's binary may be the server).
CLIENT=${CLIENT:-$BIN}
# Which embedding forms to send ("float bytes"; a server from before the bytes form: "float").
FORMS=${FORMS:-float bytes}
[ -x "$BIN" ] || { echo "per-call.sh: build first: cargo build --release" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "per-call.sh: needs valgrind" >&2; exit 2; }

if [ "${MODE:-}" = cpu ]; then
    RUNS=${RUNS:-3}
    dir=$(mktemp -d)
    "$BIN" serve --listen "127.0.0.1:$PORT" --admin-listen off --data-dir "$dir/data" \
        >"$dir/server.log" 2>&1 &
    server=$!
    trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
    # load name, bench flags for Rank; Health/Check gets the same flags with --health.
    loads=("saturation|--concurrency 4 --requests 10000 --warmup 1000"
        "paced 2000/s|--rate 2000 --requests 10000 --warmup 500"
        "paced 300/s|--rate 300 --requests 3000 --warmup 200")
    cpu() { # flags...: prints "µs per call, req/s, p99 ms"
        "$CLIENT" bench --addr "http://127.0.0.1:$PORT" --candidates "$N" --dim "$D" --k 20 \
            --max-seconds 600 --json "$@" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(r["server"]["cpu_us_per_unit"], round(r["rps"]), round(r["latency"]["p99_ms"], 2))'
    }
    echo "server CPU per call, N=$N D=$D k=20, Rank (default policy) against Health/Check, $RUNS rounds"
    printf '%-14s %5s %-7s %12s %9s %9s\n' load round call "µs per call" "req/s" "p99 ms"
    summary=()
    for load in "${loads[@]}"; do
        name=${load%%|*}
        read -r -a flags <<<"${load#*|}"
        rank=()
        health=()
        for round in $(seq 1 "$RUNS"); do
            read -r us rps p99 < <(cpu "${flags[@]}")
            rank+=("$us")
            printf '%-14s %5s %-7s %12.1f %9s %9s\n' "$name" "$round" Rank "$us" "$rps" "$p99"
            read -r us rps p99 < <(cpu "${flags[@]}" --health)
            health+=("$us")
            printf '%-14s %5s %-7s %12.1f %9s %9s\n' "$name" "$round" Health "$us" "$rps" "$p99"
        done
        summary+=("$(python3 -c "
import statistics as s
r, h = s.median([${rank[*]/%/,}]), s.median([${health[*]/%/,}])
print(f'{\"$name\":<14} median Rank {r:7.1f} µs, Health {h:6.1f} µs: {r / h:.2f}x')")")
    done
    printf '%s\n' "${summary[@]}"
    exit 0
fi

dir=$(mktemp -d)
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    if [ -n "${KEEP:-}" ]; then echo "callgrind files kept in $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT

valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" --compress-strings=no \
    "$BIN" serve --listen "127.0.0.1:$PORT" --admin-listen off --data-dir "$dir/data" \
    >"$dir/server.log" 2>&1 &
server=$!
for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.2
done

bench() { # policy, extra flags...
    local policy=$1
    shift
    "$CLIENT" bench --addr "http://127.0.0.1:$PORT" --candidates "$N" --dim "$D" --k 20 \
        --policy "$policy" --concurrency 1 --warmup 0 --max-seconds 600 --json "$@"
}

echo "instructions per Rank call, N=$N D=$D k=20, $CALLS calls on one connection after $WARMUP"
printf '%-10s %-16s %14s %10s\n' policy embeddings "instructions" degraded
part=0
for form in $FORMS; do
    flags=()
    [ "$form" = bytes ] && flags=(--embedding-bytes)
    [ "$form" = float ] && form="repeated float"
    for policy in default identity; do
        bench "$policy" --requests "$WARMUP" "${flags[@]}" >/dev/null
        callgrind_control -z "$server" >/dev/null 2>&1
        report=$(bench "$policy" --requests "$CALLS" "${flags[@]}")
        callgrind_control -d "$server" >/dev/null 2>&1
        part=$((part + 1))
        total=$(awk '/^(summary|totals):/ { print $2; exit }' "$dir/callgrind.out.$part")
        degraded=$(echo "$report" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(sum(r["degraded"].values()))')
        printf '%-10s %-16s %14s %10s\n' "$policy" "$form" \
            "$(python3 -c "print(f'{$total / $CALLS:,.0f}')")" "$degraded"
    done
done
# The transport's floor: a grpc.health.v1 check on the same server, counted the same way.
bench default --health --requests "$WARMUP" >/dev/null
callgrind_control -z "$server" >/dev/null 2>&1
bench default --health --requests "$CALLS" >/dev/null
callgrind_control -d "$server" >/dev/null 2>&1
part=$((part + 1))
total=$(awk '/^(summary|totals):/ { print $2; exit }' "$dir/callgrind.out.$part")
printf '%-10s %-16s %14s\n' health "check (the floor)" "$(python3 -c "print(f'{$total / $CALLS:,.0f}')")"
