#!/usr/bin/env bash
# Load-tests a running tactful with ghz (https://ghz.sh), one bounded run per config:
#   rank-default.json    Rank, default policy, 100 candidates x 64 dims, k 20
#   rank-identity.json   the same with the identity policy: what gRPC and protobuf cost alone
#   events-record.json   Events.Record, batches of 32 events
# Each run makes its `total` calls and stops (each call times out after `timeout`). The
# configs set no `max-duration`: in ghz 0.120 it overrides `total`, and a run then goes on for
# the whole duration. The configs find the API by server reflection
# (no proto files needed) and target 127.0.0.1:50051; for another server, port-forward it there
# (kubectl -n recsys port-forward deploy/tactful 50051) or pass ghz's own flags after the names:
#   ./benches/ghz/run.sh                          # all three
#   ./benches/ghz/run.sh rank-default             # one
#   ./benches/ghz/run.sh rank-default -- -c 8 -n 20000
# Start the server first, e.g.: cargo run --release -- serve
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v ghz >/dev/null 2>&1; then
    echo "run.sh: ghz is needed on PATH and was not found." >&2
    echo "        Install it from its releases (https://github.com/bojand/ghz/releases) or with" >&2
    echo "        'go install github.com/bojand/ghz/cmd/ghz@latest', then run this again." >&2
    exit 2
fi

names=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    names+=("${1%.json}")
    shift
done
[ "${1:-}" = "--" ] && shift
[ ${#names[@]} -eq 0 ] && names=(rank-default rank-identity events-record)

for name in "${names[@]}"; do
    if [ ! -f "$name.json" ]; then
        echo "run.sh: no config $name.json here" >&2
        exit 2
    fi
    echo "== ghz $name"
    ghz --config "$name.json" "$@"
done
