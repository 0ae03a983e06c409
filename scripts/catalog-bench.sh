#!/usr/bin/env bash
# Rank throughput with candidates that carry ids and scores only (attributes and embeddings from
# the catalog) against the same requests with everything inline: two release servers on
# loopback (one plain, one with catalog.dim = DIM), closed loop, runs interleaved
# (inline, ids, inline, ids, ...), medians of RUNS.
#
#   ./scripts/catalog-bench.sh                 # N=500, d=64, 3000 requests, 3 runs each
#   CANDIDATES=200 DIM=32 RUNS=5 ./scripts/catalog-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CANDIDATES=${CANDIDATES:-500}
DIM=${DIM:-64}
REQUESTS=${REQUESTS:-3000}
RUNS=${RUNS:-3}
CONCURRENCY=${CONCURRENCY:-4}
BIN=${CARGO_TARGET_DIR:-target}/release/tactful
[ -x "$BIN" ] || cargo build --release --locked --bin tactful
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# Starts a server with the given environment, in this shell (so that cleanup can stop it),
# logging to $work/NAME.log.
start() {
    local name=$1
    shift
    env "$@" TACTFUL_LOG=info "$BIN" serve --listen 127.0.0.1:0 --admin-listen off \
        --state memory >/dev/null 2>"$work/$name.log" &
    pids+=($!)
}
# The address NAME listens on, once it does.
address() {
    for _ in $(seq 200); do
        addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$work/$1.log" | head -1)
        [ -n "$addr" ] && { echo "http://$addr"; return; }
        sleep 0.05
    done
    echo "$1 did not start:" >&2
    cat "$work/$1.log" >&2
    exit 1
}
start plain
start cached TACTFUL_CATALOG_DIM="$DIM"
plain=$(address plain)
cached=$(address cached)

bench() {
    "$BIN" bench --candidates "$CANDIDATES" --dim "$DIM" --requests "$REQUESTS" \
        --warmup "$WARMUP" --concurrency "$CONCURRENCY" --json "$@" | tail -1
}
WARMUP=300
# CPU time (user + system, ms) the server with pid $1 has used: the load generator shares the
# machine, so throughput alone does not say which side saved the work.
cpu_ms() {
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) * 1000 / hz }' "/proc/$1/stat"
}
for run in $(seq "$RUNS"); do
    before=$(cpu_ms "${pids[0]}")
    bench --addr "$plain" >"$work/inline-$run.json"
    echo "$before $(cpu_ms "${pids[0]}")" >"$work/inline-$run.cpu"
    before=$(cpu_ms "${pids[1]}")
    bench --addr "$cached" --catalog >"$work/ids-$run.json"
    echo "$before $(cpu_ms "${pids[1]}")" >"$work/ids-$run.cpu"
done

python3 - "$work" "$RUNS" "$CANDIDATES" "$DIM" "$((REQUESTS + WARMUP))" <<'EOF'
import json, statistics, sys
work, runs, n, d, calls = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
def load(kind):
    out = []
    for r in range(1, runs + 1):
        x = json.load(open(f"{work}/{kind}-{r}.json"))
        before, after = map(float, open(f"{work}/{kind}-{r}.cpu").read().split())
        # Server CPU per Rank call (warm-up included; for ids, the one upload too).
        x["server_us"] = (after - before) * 1000 / calls
        out.append(x)
    return out
rows = {k: load(k) for k in ("inline", "ids")}
med = lambda xs: statistics.median(xs)
print(f"N={n}, d={d}, medians of {runs} closed-loop runs (interleaved)")
print("| request | req/s (runs) | median req/s | p50 ms | p99 ms | server CPU per call | errors | degraded |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for k, label in (("inline", "attributes + embeddings inline"), ("ids", "ids + scores (catalog)")):
    r = rows[k]
    rps = [x["rps"] for x in r]
    print(f"| {label} | {', '.join(f'{v:.0f}' for v in rps)} | {med(rps):.0f} "
          f"| {med([x['latency']['p50_ms'] for x in r]):.2f} "
          f"| {med([x['latency']['p99_ms'] for x in r]):.2f} "
          f"| {med([x['server_us'] for x in r]):.0f} µs "
          f"| {sum(sum(x['errors'].values()) for x in r)} "
          f"| {sum(sum(x['degraded'].values()) for x in r)} |")
ratio = med([x["rps"] for x in rows["ids"]]) / med([x["rps"] for x in rows["inline"]])
print(f"ids-only / inline throughput: {ratio:.2f}x")
EOF
