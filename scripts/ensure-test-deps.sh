#!/usr/bin/env bash
# Installs what the test suite needs and a fresh machine may lack: rustfmt and clippy,
# and moto_server, the S3 server the S3 tests run against. Idempotent.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done


moto_works() {
    # A pyenv shim can exist without the command behind it, so check that the active
    # Python has the server's module. (Running `moto_server --help` here made cargo's next
    # probe of rustc fail on some machines.)
    command -v moto_server >/dev/null 2>&1 \
        && python3 -c 'import moto.server' >/dev/null 2>&1 < /dev/null
}

if ! moto_works; then
    echo "ensure-test-deps: installing moto[server] with pip" >&2
    python3 -m pip install --quiet --disable-pip-version-check 'moto[server]'
    # pyenv needs its shims regenerated for a newly installed console script.
    if command -v pyenv >/dev/null 2>&1; then
        pyenv rehash || true
    fi
fi

if ! moto_works; then
    echo "ensure-test-deps: moto_server is still not runnable; is pip's bin directory on PATH?" >&2
    exit 1
fi
echo "ensure-test-deps: moto_server OK ($(command -v moto_server))" >&2
