#!/usr/bin/env bash
# Sets up a fresh machine for peft-ts: OpenBLAS (through apt-get when it is missing and we may install),
# then the npm dependencies, which builds the native addon. Safe to run again.
# --with-test-tools also installs what the test suite checks against: llama.cpp's prebuilt binaries from npm
# (node-llama-cpp, into .llama-cpp/, apart from the package's own dependencies), and chromium (apt-get, as root).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! node scripts/find-openblas.cjs json >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "peft-ts setup: installing OpenBLAS (libopenblas-openmp-dev) with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-openmp-dev >/dev/null
  else
    echo "peft-ts setup: OpenBLAS not found and apt-get is not usable here; install libopenblas-dev (or Accelerate on macOS)." >&2
    echo "peft-ts setup: continuing; the slow pure-TypeScript backend will be used (run the tests with PEFT_TS_REQUIRE_NATIVE=0)." >&2
  fi
fi

npm ci --no-audit --no-fund

if [ "${1:-}" = "--with-test-tools" ]; then
  # Chromium for the browser test of peft serve's chat page (driven by puppeteer-core, which downloads no browser).
  if ! command -v chromium >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
      echo "peft-ts setup: installing chromium with apt-get"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "peft-ts setup: chromium not found and apt-get is not usable here; the browser test of peft serve will be skipped" >&2
    fi
  fi
  # The CPU build only (--omit=optional skips its CUDA/Vulkan builds, ~600 MB); its postinstall is not needed.
  LLAMA_CPP_VERSION=3.22.1
  platform="$(node -p 'process.platform + "-" + process.arch')"
  if [ "$platform" = "linux-x64" ] || [ "$platform" = "darwin-arm64" ]; then
    pkg="@node-llama-cpp/${platform/darwin-arm64/mac-arm64-metal}"
    if [ ! -f .llama-cpp/node_modules/node-llama-cpp/package.json ]; then
      mkdir -p .llama-cpp && [ -f .llama-cpp/package.json ] || echo '{"private": true}' > .llama-cpp/package.json
      npm install --prefix .llama-cpp --omit=optional --no-audit --no-fund --ignore-scripts \
        "node-llama-cpp@$LLAMA_CPP_VERSION" "$pkg@$LLAMA_CPP_VERSION" \
        || echo "peft-ts setup: node-llama-cpp could not be installed; the llama.cpp checks of the GGUF export will be skipped" >&2
    fi
  else
    echo "peft-ts setup: no prebuilt llama.cpp for $platform; the llama.cpp checks of the GGUF export will be skipped" >&2
  fi
fi
