#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every unit, integration and doc test (benches
# are built and run once each in test mode, so they cannot rot). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --all-targets --locked
cargo test --doc --locked
