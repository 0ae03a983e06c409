#!/usr/bin/env bash
# tactful against the Python grpcio + numpy MMR re-ranker (benches/python/mmr_server.py) on the
# same payload: N candidates x D-dim embeddings, k 20, sent by tactful's own load generator
# (closed loop, 4 clients, REQUESTS calls after WARMUP), RUNS rounds alternating the two
# servers; prints one table row per run and server, and the medians. Loopback only, bounded.
#   cargo build --release && ./benches/side-by-side.sh      # N=, D=, REQUESTS=, RUNS= to change
# GENERATOR=h2load sends the same request with h2load (Debian's nghttp2-client) instead, 4
# connections: a lighter generator leaves more of a small machine's cores to the servers
# (the request is written once by `tactful bench --write-frame`; CPU per call from /proc).
# The virtual environment (grpcio, grpcio-tools, numpy from PyPI) and the stubs generated from
# proto/ go to target/python-baseline/, made on the first run.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100}
D=${D:-64}
REQUESTS=${REQUESTS:-5000}
WARMUP=${WARMUP:-500}
RUNS=${RUNS:-3}
TACTFUL_PORT=${TACTFUL_PORT:-50071}
PYTHON_PORT=${PYTHON_PORT:-50072}
BIN=${BIN:-target/release/tactful}
WORK=target/python-baseline

[ -x "$BIN" ] || { echo "side-by-side.sh: build first: cargo build --release" >&2; exit 2; }
if [ ! -x "$WORK/venv/bin/python" ]; then
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install --quiet grpcio grpcio-tools numpy
fi
if [ ! -d "$WORK/stubs/tactful" ]; then
    mkdir -p "$WORK/stubs"
    "$WORK/venv/bin/python" -m grpc_tools.protoc -Iproto --python_out="$WORK/stubs" \
        --grpc_python_out="$WORK/stubs" proto/tactful/v1/*.proto
fi

data=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$data"
}
trap cleanup EXIT

"$BIN" serve --listen "127.0.0.1:$TACTFUL_PORT" --admin-listen off --data-dir "$data/tactful" \
    >"$data/tactful.log" 2>&1 &
pids+=($!)
"$WORK/venv/bin/python" benches/python/mmr_server.py --port "$PYTHON_PORT" --stubs "$WORK/stubs" \
    >"$data/python.log" 2>&1 &
pids+=($!)
# Python's imports can take many seconds on a busy machine: wait up to a minute for each.
for port in "$TACTFUL_PORT" "$PYTHON_PORT"; do
    up=
    for _ in $(seq 1 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && up=1 && break
        sleep 0.1
    done
    [ -n "$up" ] || { echo "side-by-side.sh: nothing listens on $port:" >&2; cat "$data"/*.log >&2; exit 1; }
done

GENERATOR=${GENERATOR:-tactful}
if [ "$GENERATOR" = h2load ]; then
    command -v h2load >/dev/null || { echo "side-by-side.sh: needs h2load (apt-get install nghttp2-client)" >&2; exit 2; }
    "$BIN" bench --candidates "$N" --dim "$D" --k 20 --write-frame "$data/rank.bin"
fi
# The server process behind each port, for its CPU time.
declare -A server_pid=(["$TACTFUL_PORT"]=${pids[0]} ["$PYTHON_PORT"]=${pids[1]})

h2load_run() { # port, calls
    h2load -n "$2" -c 4 -m 1 -d "$data/rank.bin" -H 'content-type: application/grpc' \
        -H 'te: trailers' --log-file "$data/log.tsv" "http://127.0.0.1:$1/tactful.v1.Ranker/Rank" \
        >"$data/h2load.out"
    grep -q " 0 failed, 0 errored" "$data/h2load.out" || { cat "$data/h2load.out" >&2; exit 1; }
}

bench() { # port: prints a report in the shape `tactful bench --json` gives
    if [ "$GENERATOR" != h2load ]; then
        "$BIN" bench --addr "http://127.0.0.1:$1" --candidates "$N" --dim "$D" --k 20 \
            --requests "$REQUESTS" --warmup "$WARMUP" --concurrency 4 --max-seconds 120 --json
        return
    fi
    local pid=${server_pid[$1]} before after
    h2load_run "$1" "$WARMUP"
    before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    h2load_run "$1" "$REQUESTS"
    after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    python3 benches/h2load_report.py "$data/log.tsv" "$data/h2load.out" "$before" "$after" \
        "$REQUESTS" --json
}
row() {
    python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
server = r.get("server") or {}
cpu = server.get("cpu_us_per_unit") or float("nan")
lat = r["latency"]
errors = sum(r["errors"].values())
print("%-8s %9.0f %8.2f %8.2f %10.0f %6d" % (sys.argv[1], r["rps"], lat["p50_ms"], lat["p99_ms"], cpu, errors))
' "$1"
}

echo "N=$N D=$D k=20, $REQUESTS requests per run, 4 clients ($GENERATOR), one connection each"
printf '%-8s %9s %8s %8s %10s %6s\n' server "req/s" "p50 ms" "p99 ms" "CPU µs/call" errors
results=()
for run in $(seq 1 "$RUNS"); do
    for side in tactful python; do
        port=$TACTFUL_PORT; [ "$side" = python ] && port=$PYTHON_PORT
        line=$(bench "$port" | row "$side")
        echo "$line"
        results+=("$line")
    done
done
printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
rows = {}
for line in sys.stdin:
    f = line.split()
    rows.setdefault(f[0], []).append([float(x) for x in f[1:5]])
print("medians:")
for side, runs in rows.items():
    med = [statistics.median(col) for col in zip(*runs)]
    print("%-8s %9.0f %8.2f %8.2f %10.0f" % (side, med[0], med[1], med[2], med[3]))
if "tactful" in rows and "python" in rows:
    t = statistics.median(r[0] for r in rows["tactful"])
    p = statistics.median(r[0] for r in rows["python"])
    print("tactful / python throughput: %.1fx" % (t / p))
'
