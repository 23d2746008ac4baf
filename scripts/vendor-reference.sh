#!/usr/bin/env bash
# Copies the golden files made by Python transformers 4.44 / peft 0.15 (../shared/reference, generated there by
# make_fixtures.py with ../shared/pyref) into test/fixtures/reference, so the tests run in a clone of this
# repository alone. Run again whenever ../shared/reference changes; the copy is byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/reference}
dst=test/fixtures/reference
[ -f "$src/index.json" ] || { echo "vendor-reference: $src/index.json not found; pass the reference folder as the first argument" >&2; exit 1; }
tmp=$(mktemp -d "test/fixtures/.reference-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp -r "$src/models" "$src/peft" "$src/index.json" "$src/README.md" "$tmp/"
rm -rf "$dst" && mv "$tmp" "$dst"
trap - EXIT
echo "vendor-reference: copied $(find "$dst" -type f | wc -l) files into $dst"
