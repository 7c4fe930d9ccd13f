#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what is missing (moto's S3 server),
# checks formatting and lints, then runs every test. The S3 tests start their own moto
# server on a free loopback port. Under CI=true a missing S3 server fails the run.
#
# Heavier property tests: SEGSTORE_PROPTEST_CASES=500 scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Nothing here reads the terminal. Cargo lets its rustc probe (`rustc -`) read the inherited
# standard input; where that is closed or shared, the probe read stray build output and CI
# failed with "failed to run `rustc` to learn about target-specific information".
exec < /dev/null

scripts/ensure-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo test"
# Library, binary, integration and doc tests. The benches are bench binaries, run by
# `cargo bench`; clippy above already type-checks them.
cargo test --locked -- --test-threads=2
