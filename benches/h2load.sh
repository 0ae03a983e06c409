#!/usr/bin/env bash
# tactful under h2load (Debian's nghttp2-client), an HTTP/2 load generator independent of
# tactful's own: a Rank request (N candidates x D-dim embeddings, k 20, written once by
# `tactful bench --write-frame`) and a grpc.health.v1 check, each sent REQUESTS times after
# WARMUP, closed loop over CLIENTS connections, RUNS rounds alternating; prints req/s, the
# latency percentiles from h2load's per-request log, and the server's CPU per call (from
# /proc), then the medians and the ratio Rank / Health/Check. RATE=n sends n req/s per
# connection instead (h2load --rps; its timer paces in steps of about 1 ms, so expect bursts).
#   cargo build --release && ./benches/h2load.sh      # N=, D=, REQUESTS=, CLIENTS=, RUNS=, RATE=
# Loopback only, bounded by REQUESTS; needs h2load (apt-get install nghttp2-client).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100}
D=${D:-64}
REQUESTS=${REQUESTS:-10000}
WARMUP=${WARMUP:-1000}
CLIENTS=${CLIENTS:-4}
RUNS=${RUNS:-3}
RATE=${RATE:-0}
PORT=${PORT:-50073}
BIN=${BIN:-target/release/tactful}

[ -x "$BIN" ] || { echo "h2load.sh: build first: cargo build --release" >&2; exit 2; }
command -v h2load >/dev/null || { echo "h2load.sh: needs h2load (apt-get install nghttp2-client)" >&2; exit 2; }

dir=$(mktemp -d)
"$BIN" serve --listen "127.0.0.1:$PORT" --admin-listen off --data-dir "$dir/data" \
    >"$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done
"$BIN" bench --candidates "$N" --dim "$D" --k 20 --write-frame "$dir/rank.bin"
printf '\0\0\0\0\0' >"$dir/health.bin" # an empty HealthCheckRequest: the whole server

pace=()
[ "$RATE" -gt 0 ] && pace=(--rps "$RATE")
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
# call body path requests: prints "req/s p50 p90 p99 µs-per-call"
load() {
    h2load -n "$3" -c "$CLIENTS" -m 1 "${pace[@]}" -d "$2" \
        -H 'content-type: application/grpc' -H 'te: trailers' \
        --log-file "$dir/log.tsv" "http://127.0.0.1:$PORT$1" >"$dir/h2load.out"
    grep -q " 0 failed, 0 errored" "$dir/h2load.out" || { cat "$dir/h2load.out" >&2; exit 1; }
}
measure() {
    load "$1" "$2" "$WARMUP"
    local before after
    before=$(cpu_ticks)
    load "$1" "$2" "$REQUESTS"
    after=$(cpu_ticks)
    python3 benches/h2load_report.py "$dir/log.tsv" "$dir/h2load.out" "$before" "$after" "$REQUESTS"
}

mode="closed loop"
[ "$RATE" -gt 0 ] && mode="$RATE req/s per connection"
echo "h2load, $CLIENTS connections, $mode, $REQUESTS calls after $WARMUP, N=$N D=$D k=20"
printf '%-13s %5s %9s %8s %8s %8s %12s\n' call round "req/s" "p50 ms" "p90 ms" "p99 ms" "µs per call"
rank_cpu=() health_cpu=() rank_rps=() health_rps=()
for round in $(seq 1 "$RUNS"); do
    read -r rps p50 p90 p99 cpu < <(measure /tactful.v1.Ranker/Rank "$dir/rank.bin")
    printf '%-13s %5s %9s %8s %8s %8s %12s\n' Rank "$round" "$rps" "$p50" "$p90" "$p99" "$cpu"
    rank_cpu+=("$cpu") rank_rps+=("$rps")
    read -r rps p50 p90 p99 cpu < <(measure /grpc.health.v1.Health/Check "$dir/health.bin")
    printf '%-13s %5s %9s %8s %8s %8s %12s\n' Health/Check "$round" "$rps" "$p50" "$p90" "$p99" "$cpu"
    health_cpu+=("$cpu") health_rps+=("$rps")
done
python3 - "${rank_cpu[*]}" "${health_cpu[*]}" "${rank_rps[*]}" "${health_rps[*]}" <<'EOF'
import statistics as s, sys
rc, hc, rr, hr = ([float(x) for x in a.split()] for a in sys.argv[1:])
print(f"medians: Rank {s.median(rr):.0f} req/s, {s.median(rc):.1f} µs per call; "
      f"Health/Check {s.median(hr):.0f} req/s, {s.median(hc):.1f} µs per call; "
      f"CPU ratio {s.median(rc) / s.median(hc):.1f}x")
EOF
