#!/usr/bin/env bash
# Installs what the test suite needs and a fresh machine may lack. Idempotent.
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

if ! command -v moto_server >/dev/null 2>&1; then
  echo "== installing moto[server] (the S3 test server)"
  python3 -m pip install --quiet 'moto[server]'
  hash -r
fi
if ! command -v moto_server >/dev/null 2>&1; then
  echo "moto_server is still not on PATH after installing moto[server]" >&2
  exit 1
fi
