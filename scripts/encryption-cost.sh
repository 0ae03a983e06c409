#!/usr/bin/env bash
# What encryption at rest costs: ingestion (events/s into the disk store, durable) and recovery
# time, with encryption (this tree) against without (the release before it, built from git),
# in one run, alternating A/B so that the machine's drift hits both alike. Prints medians.
#
#   scripts/encryption-cost.sh [USERS] [ROUNDS]     defaults: 200000 users, 3 rounds
#
# Both builds go to one scratch target directory (CARGO_TARGET_DIR, default
# target/encryption-cost), so the dependencies are compiled once. The tree without encryption
# is the commit that added the format-2 fixture (the last one before it), checked out with
# `git worktree` into a temporary directory that is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
users="${1:-200000}"
rounds="${2:-3}"
before="$(git log --format=%H -n 1 -- tests/fixtures/data-format-2/README.md)"
target="${CARGO_TARGET_DIR:-$PWD/target/encryption-cost}"
work="$(mktemp -d)"
trap 'git worktree remove --force "$work/before" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

git worktree add --detach "$work/before" "$before" >/dev/null 2>&1
echo "== building both (target: $target)" >&2
CARGO_TARGET_DIR="$target/after" cargo build --release --locked --example durability >&2
(cd "$work/before" && CARGO_TARGET_DIR="$target/before" cargo build --release --locked --example durability >&2)

run() { # run NAME BINARY: one recovery measurement, appended to $work/NAME
    "$2" recovery --users "$users" >>"$work/$1.out"
}
for r in $(seq 1 "$rounds"); do
    echo "== round $r of $rounds" >&2
    run without "$target/before/release/examples/durability"
    run with "$target/after/release/examples/durability"
done

python3 - "$work" "$users" <<'PY'
import re, statistics, sys
work, users = sys.argv[1], int(sys.argv[2])
def parse(name):
    text = open(f"{work}/{name}.out").read()
    rate = [float(x) for x in re.findall(r"\(([0-9.]+) events/s\)", text)]
    crash = [float(x) for x in re.findall(r"crash, default snapshots:\s+recovered in ([0-9.]+) s", text)]
    log = [float(x) for x in re.findall(r"whole history in log:\s+recovered in ([0-9.]+) s", text)]
    clean = [float(x) for x in re.findall(r"clean shutdown:\s+recovered in ([0-9.]+) s", text)]
    return {k: statistics.median(v) for k, v in
            [("rate", rate), ("crash", crash), ("log", log), ("clean", clean)]}
a, b = parse("without"), parse("with")
print(f"{users} typical users (30 events each), medians of {len(open(f'{work}/with.out').read().split('recovery:')) - 1} runs each\n")
print("| measure | without encryption | with encryption | cost |")
print("|---|---:|---:|---:|")
print(f"| ingestion, disk store (events/s) | {a['rate']:,.0f} | {b['rate']:,.0f} | {100 * (a['rate'] / b['rate'] - 1):+.1f}% time |")
for k, label in [("crash", "recovery after kill -9, default snapshots"),
                 ("log", "recovery, whole history in the log"),
                 ("clean", "recovery after a clean shutdown")]:
    cost = f"{100 * (b[k] / a[k] - 1):+.1f}%" if a[k] >= 0.05 else "(too short to compare)"
    print(f"| {label} (s) | {a[k]:.2f} | {b[k]:.2f} | {cost} |")
PY
