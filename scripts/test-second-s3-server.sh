#!/usr/bin/env bash
# Opt-in: runs segstore's S3 conformance, identity (create-only write check), commit and
# fault tests against a second S3 implementation instead of moto: s3s-fs 0.14.1 from
# crates.io (Apache-2.0; later versions need a newer Rust), started on loopback.
#
#   scripts/test-second-s3-server.sh            # installs s3s-fs if missing, runs the tests
#   S3S_FS=/path/to/s3s-fs scripts/test-second-s3-server.sh
#   SEGSTORE_SECOND_S3_TESTS="s3_identity" scripts/test-second-s3-server.sh
#
# Not part of scripts/test.sh: building s3s-fs compiles a few hundred crates. The result
# for each server tried is recorded in docs/OPERATIONS.md ("S3 servers tested").
#
# Expected on s3s-fs 0.14.1: its If-None-Match: * is check-then-write (concurrent creates
# of one key all succeed), so creating a store is refused (Error::Unsupported naming the
# server) and every test that needs a store fails at open; that refusal is the point.
# `a_check_then_write_server_is_refused_when_the_store_is_created` is not meaningful
# here (it simulates such a server through a proxy in front of the tested one).
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.14.1
root_dir="${TMPDIR:-/tmp}/segstore-s3s-fs"
bin="${S3S_FS:-$root_dir/bin/s3s-fs}"
if [[ ! -x "$bin" ]]; then
    echo "installing s3s-fs $version (binary feature) into $root_dir ..."
    cargo install s3s-fs --version "$version" --features binary --locked --root "$root_dir"
fi

# The credentials the tests sign with (tests/support/moto.rs).
access_key=segstore-test-access-key
secret_key=segstore-test-SECRET-d0n0tL3ak
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=$(mktemp -d)
log="$data.log"
"$bin" --host 127.0.0.1 --port "$port" --access-key "$access_key" --secret-key "$secret_key" \
    "$data" >"$log" 2>&1 &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 100); do
    if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
done
echo "s3s-fs $version on 127.0.0.1:$port (log: $log)"

export SEGSTORE_S3_TEST_ENDPOINT="http://127.0.0.1:$port"
export SEGSTORE_S3_EXPECT_REFUSED=1
tests="${SEGSTORE_SECOND_S3_TESTS:-backend_conformance s3_identity s3_errors s3_faults s3_multiprocess model_s3}"
status=0
for t in $tests; do
    echo "=== $t against s3s-fs"
    if ! cargo test --test "$t" -- --test-threads 2; then
        status=1
    fi
done
exit $status
