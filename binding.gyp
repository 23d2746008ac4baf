# The native backend addon (src/backend/native). Built by `npm install` through node-gyp; when the build fails,
# scripts/native-build-failed.cjs explains why and peft-ts falls back to its pure-TypeScript backend.
{
  "targets": [
    {
      "target_name": "peft_ts_native",
      "sources": [
        "src/backend/native/addon.cc",
        "src/backend/native/common.cc",
        "src/backend/native/elementwise.cc",
        "src/backend/native/fused.cc",
        "src/backend/native/gemm.cc",
        "src/backend/native/gemm-few.cc",
        "src/backend/native/gemm-half.cc",
        "src/backend/native/generate.cc",
        "src/backend/native/indexing.cc",
        "src/backend/native/optim.cc",
        "src/backend/native/quant.cc",
        "src/backend/native/reduce.cc",
        "src/backend/native/rows.cc"
      ],
      # node-addon-api with C++ exceptions, std::exception included (kernels' errors become JS Errors).
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except_all"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "<!@(node scripts/find-openblas.cjs defines)"],
      "include_dirs": ["<!@(node scripts/find-openblas.cjs include)"],
      # -O3 vectorises the kernels' inner loops (-fno-trapping-math lets it turn float selects into blends; nothing
      # here reads FP exception flags); no FMA contraction, so results match the reference's rounding where the
      # code promises it (AdamW) whatever -march a build uses.
      "cflags_cc": ["-std=c++17", "-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc!": ["-std=gnu++17", "-std=gnu++1y", "-O2", "-O0"],
      "conditions": [
        ["OS=='linux'", {
          "cflags_cc": ["-fopenmp"],
          # -L and rpath to the directory find-openblas chose, so that at run time the loader picks that very
          # variant (the OpenMP build) rather than whatever the system's libopenblas.so.0 alternative points at.
          "libraries": [
            "-L<!(node scripts/find-openblas.cjs libdir)",
            "-Wl,-rpath,<!(node scripts/find-openblas.cjs libdir)",
            "<!@(node scripts/find-openblas.cjs libs)",
            "-fopenmp"
          ]
        }],
        ["OS=='linux' and target_arch=='x64'", {
          # A portable baseline (SSE4.2, POPCNT; every x86-64 CPU of the last decade), never -march=native: the addon
          # must run on any machine of the same kind. OpenBLAS picks its own AVX2/AVX-512 kernels at run time.
          "cflags_cc": ["-march=x86-64-v2", "-mtune=generic"]
        }],
        ["OS=='mac'", {
          # Apple's clang has no OpenMP; the kernels then run on one thread, Accelerate still threads GEMM.
          "libraries": ["<!@(node scripts/find-openblas.cjs libs)"],
          "xcode_settings": {
            "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
            "GCC_OPTIMIZATION_LEVEL": "3",
            "OTHER_CPLUSPLUSFLAGS": ["-ffp-contract=off"]
          }
        }]
      ]
    }
  ]
}
