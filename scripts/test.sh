#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what is missing (moto's S3 server),
# checks formatting and lints, then runs every test. The S3 tests start their own moto
# server on a free loopback port. Under CI=true a missing S3 server fails the run.
#
# Heavier property tests: SEGSTORE_PROPTEST_CASES=500 scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Cargo probes rustc with `rustc -` reading /dev/null. Where /dev/null has become a regular
# file (an earlier `segstore get -o /dev/null`, run as root, renamed a file over it), the
# probe compiles whatever was written there and every cargo command fails with "failed to run
# `rustc` to learn about target-specific information". Put the device back, or at least
# empty the file before each cargo command.
null_device() {
    [ -c /dev/null ] && return 0
    echo "test.sh: /dev/null is not a character device; restoring it" >&2
    if mknod -m 666 /dev/.null.segstore c 1 3 2>/dev/.null.segstore.err \
        && mv -f /dev/.null.segstore /dev/null; then
        rm -f /dev/.null.segstore.err
        return 0
    fi
    rm -f /dev/.null.segstore /dev/.null.segstore.err
    : > /dev/null
}

null_device
scripts/ensure-test-deps.sh

echo "== cargo fmt --check"
null_device
cargo fmt --all -- --check

echo "== cargo clippy"
null_device
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo clippy, feature subsets"
# The local store builds alone, and with S3, Tantivy or the test support alone.
for features in "" "s3" "tantivy" "testing"; do
    null_device
    cargo clippy --lib --locked --no-default-features --features "$features" -- -D warnings
done

echo "== cargo test, local store alone"
# The library's unit tests without aws-sdk-s3 and tantivy in the build.
null_device
cargo test --lib --locked --no-default-features --features testing -- --test-threads=2

echo "== cargo doc"
null_device
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --features testing

echo "== cargo test"
# Library, binary, integration and doc tests. The benches are bench binaries, run by
# `cargo bench`; clippy above already type-checks them.
null_device
cargo test --locked -- --test-threads=2
