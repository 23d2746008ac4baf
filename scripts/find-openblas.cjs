#!/usr/bin/env node
/**
 * Locates a CBLAS for the native addon; binding.gyp calls it as `node scripts/find-openblas.cjs WHAT`:
 *   include  the directory holding cblas.h (empty on macOS, where Accelerate's framework headers are used)
 *   libdir   the directory holding the library (binding.gyp adds it as -L and as the run-time rpath)
 *   libs     the linker flags naming the library
 *   defines  preprocessor symbols telling the C++ code which BLAS it got (PEFT_BLAS_OPENMP, …)
 *   json     everything above as one JSON object (for humans and for bench/gemm.ts)
 * Preference: OpenBLAS built with OpenMP (it shares libgomp's thread pool with our kernels and runs
 * single-threaded inside our parallel regions), then the pthreads build, then whatever libopenblas the
 * system's alternatives point at. PEFT_TS_BLAS_INCLUDE + PEFT_TS_BLAS_LIBDIR override the search.
 * Exits 1 with a message on stderr when nothing is found, which fails the build (and the install script
 * then explains how to fix it).
 */
"use strict";
const fs = require("node:fs");
const path = require("node:path");

function find() {
  if (process.platform === "darwin") {
    return {
      variant: "accelerate",
      include: "",
      libdir: "",
      libs: "-framework Accelerate",
      defines: "PEFT_BLAS_ACCELERATE",
    };
  }
  const env = process.env;
  const candidates = [];
  if (env.PEFT_TS_BLAS_INCLUDE && env.PEFT_TS_BLAS_LIBDIR) {
    candidates.push({ variant: "custom", include: env.PEFT_TS_BLAS_INCLUDE, libdir: env.PEFT_TS_BLAS_LIBDIR });
  }
  const triplet = { x64: "x86_64-linux-gnu", arm64: "aarch64-linux-gnu", ppc64: "powerpc64le-linux-gnu" }[process.arch];
  if (triplet) {
    const inc = `/usr/include/${triplet}`,
      lib = `/usr/lib/${triplet}`;
    candidates.push({ variant: "openmp", include: `${inc}/openblas-openmp`, libdir: `${lib}/openblas-openmp` });
    candidates.push({ variant: "pthread", include: `${inc}/openblas-pthread`, libdir: `${lib}/openblas-pthread` });
    candidates.push({ variant: "system", include: inc, libdir: lib });
  }
  candidates.push({ variant: "system", include: "/usr/include/openblas", libdir: "/usr/lib64" }); // Fedora, RHEL
  candidates.push({ variant: "system", include: "/usr/include", libdir: "/usr/lib64" });
  candidates.push({ variant: "system", include: "/usr/include", libdir: "/usr/lib" });
  candidates.push({ variant: "system", include: "/usr/local/include", libdir: "/usr/local/lib" });

  for (const c of candidates) {
    const header = path.join(c.include, "cblas.h");
    const lib = path.join(c.libdir, "libopenblas.so");
    if (!fs.existsSync(header) || !fs.existsSync(lib)) continue;
    // A "system" libopenblas.so is a symlink chain (Debian alternatives); its target tells the threading model.
    const real = fs.realpathSync(lib);
    const openmp = c.variant === "openmp" || /openmp/.test(real);
    return {
      variant: openmp ? "openmp" : c.variant,
      include: c.include,
      libdir: c.libdir,
      libs: "-lopenblas",
      defines: `PEFT_BLAS_OPENBLAS ${openmp ? "PEFT_BLAS_OPENMP" : ""}`.trim(),
      library: real,
    };
  }
  return null;
}

const what = process.argv[2] ?? "json";
const found = find();
if (!found) {
  process.stderr.write(
    "find-openblas: no OpenBLAS found (looked for cblas.h and libopenblas.so); " +
      "install it with: apt-get install libopenblas-openmp-dev\n",
  );
  process.exit(1);
}
if (what === "json") process.stdout.write(`${JSON.stringify(found, null, 2)}\n`);
else if (what in found) process.stdout.write(`${String(found[what])}\n`);
else {
  process.stderr.write(`find-openblas: unknown request "${what}" (use include, libdir, libs, defines or json)\n`);
  process.exit(2);
}
