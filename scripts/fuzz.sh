#!/usr/bin/env bash
# Fuzzes request decoding and validation for a few minutes: the proptest properties of
# tests/adversarial/fuzz.rs (arbitrary bytes as every request message, hostile Rank requests
# and their truncations and bit flips), run round after round with a fresh random seed each
# round (2,000 cases per property, about 20 s in a debug build; FUZZ_CASES_PER_ROUND), until
# the time is up. Not part of CI (./scripts/test.sh runs the same properties with 256 cases).
# A failure prints the shrunk input and stops.
#
#   ./scripts/fuzz.sh          # 3 minutes
#   ./scripts/fuzz.sh 20       # 20 minutes
set -euo pipefail
cd "$(dirname "$0")/.."

minutes="${1:-3}"
cases="${FUZZ_CASES_PER_ROUND:-2000}"
end=$(( $(date +%s) + minutes * 60 ))
cargo test --test adversarial --no-run >/dev/null 2>&1 || cargo test --test adversarial --no-run
rounds=0
while [ "$(date +%s)" -lt "$end" ]; do
    rounds=$((rounds + 1))
    PROPTEST_CASES="$cases" cargo test --quiet --test adversarial fuzz:: -- --test-threads 2
done
echo "fuzz: $rounds round(s) of $cases cases per property, no failure"
