#!/usr/bin/env bash
# Crash test: kills the server with SIGKILL again and again while clients write, restarts it on
# the same data directory each time, and checks that nothing it acknowledged was lost
# (tests/crash.rs). Usage:
#   scripts/crash-test.sh [ROUNDS]                 # default 20
#   TACTFUL_CRASH_SEED=N scripts/crash-test.sh     # replay the load of an earlier run's seed
# Built in release, as deployed: a faster server has more writes in flight at each kill.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-20}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

status=0
TACTFUL_CRASH_ROUNDS="$rounds" cargo test --release --locked --test crash -- --nocapture 2>&1 |
  tee "$log" || status=$?

summary="$(grep -a '^crash summary:' "$log" | tail -n 1 || true)"
field() { grep -o "\b$1=[0-9]*" <<<"$summary" | cut -d= -f2; }
if [[ -n "$summary" ]]; then
  echo "crash test: $(field rounds) rounds, $(field acknowledged_explicit) acknowledged explicit" \
    "events (+$(field acknowledged_consent) consent changes), $(field lost) lost" \
    "($(field still_missing_on_reread) still missing when read again), $(field invented) invented," \
    "seed $(field seed)"
else
  echo "crash test: no summary (the build or the start-up failed), exit status $status"
fi
exit "$status"
