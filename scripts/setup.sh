#!/usr/bin/env bash
# Sets up a fresh machine for peft-ts: OpenBLAS (through apt-get when it is missing and we may install),
# then the npm dependencies, which builds the native addon. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! node scripts/find-openblas.cjs json >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "peft-ts setup: installing OpenBLAS (libopenblas-openmp-dev) with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-openmp-dev >/dev/null
  else
    echo "peft-ts setup: OpenBLAS not found and apt-get is not usable here; install libopenblas-dev (or Accelerate on macOS)." >&2
    echo "peft-ts setup: continuing; the slow pure-TypeScript backend will be used." >&2
  fi
fi

npm ci --no-audit --no-fund
