#!/usr/bin/env node
/**
 * Runs when `node-gyp rebuild` fails during `npm install`: explain, then exit 0 so that the package still
 * installs and falls back to the (much slower) pure-TypeScript backend.
 */
"use strict";
process.stderr.write(
  "\npeft-ts: the native backend (build/Release/peft_ts_native.node) was NOT built, so peft-ts will use its " +
    "pure-TypeScript backend, which is correct but one to two orders of magnitude slower. The native addon needs " +
    "a C++17 compiler, make, python3 and OpenBLAS with its headers; on Debian/Ubuntu install them with " +
    "`apt-get install libopenblas-openmp-dev g++ make python3` (on macOS, Xcode's command-line tools and the " +
    "Accelerate framework are enough), then run `npm rebuild peft-ts` (or `npm rebuild` inside this repository). " +
    "The compiler errors above say what went wrong.\n\n",
);
process.exit(0);
