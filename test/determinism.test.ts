/**
 * Results must not depend on thread timing: the same seed and inputs give bit-identical results whatever the thread
 * count (PEFT_TS_THREADS) and whatever the adaptive thread count decides on a contended machine.
 *
 * Two levels. Kernel by kernel, in this process: every threaded path of the native backend (GEMM of each shape class,
 * reductions, norms and their weight gradients, softmax, cross-entropy, AdamW) on inputs large enough to be split,
 * run with 1, 2 and 3 threads and compared bit for bit. End to end, in child processes: a few LoRA training steps
 * of small GPT-2 and LLaMA models (dropout on, gradient clipping, AdamW) with PEFT_TS_THREADS=1, =2, and =2 with the
 * adaptive thread count beside a busy neighbour process; losses and the saved adapter files must be identical.
 *
 * When this file is run with PEFT_TS_DETERMINISM_CHILD=1 it is that child: it trains and prints one JSON line.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Backend, GemmSpec, Storage, View } from "../src/backend/backend.js";
import { CpuStorage } from "../src/backend/pool.js";
import { setAdaptiveThreads, setThreads, threads } from "../src/backend/native/native-backend.js";
import { nativeOrReason, rng } from "./helpers.js";

const CHILD_ENV = "PEFT_TS_DETERMINISM_CHILD";

// ---- the child: a few training steps, losses and adapter hashes on stdout -------------------------------------------

/** Train small GPT-2 and LLaMA LoRA models for a few steps; print {model: {losses, adapter sha256}} as JSON. */
async function child(): Promise<void> {
  const T = await import("../src/tensor/index.js");
  const { AutoModelForCausalLM } = await import("../src/models/auto.js");
  const { getPeftModel, LoraConfig, TaskType } = await import("../src/peft/index.js");
  const { AdamW, clipGradNorm } = await import("../src/optim/index.js");
  // Wide enough (128) and long enough (4 × 32 tokens) that products, norms and softmaxes take the threaded paths.
  const models = {
    gpt2: {
      config: { model_type: "gpt2", vocab_size: 512, n_positions: 64, n_embd: 128, n_layer: 2, n_head: 4 },
      lora: { target_modules: ["c_attn", "c_proj", "c_fc"], fan_in_fan_out: true },
    },
    llama: {
      config: {
        model_type: "llama",
        vocab_size: 512,
        hidden_size: 128,
        intermediate_size: 384,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        max_position_embeddings: 64,
      },
      lora: { target_modules: "all-linear" },
    },
  };
  const r = rng(7);
  const ids = Int32Array.from({ length: 4 * 32 }, () => Math.floor(r() * 512));
  const out: Record<string, { losses: number[]; adapter: string }> = {};
  const dir = mkdtempSync(join(tmpdir(), "peft-ts-determinism-"));
  try {
    for (const [name, m] of Object.entries(models)) {
      T.manualSeed(1234);
      const base = AutoModelForCausalLM.fromConfig(m.config);
      const peft = getPeftModel(
        base,
        LoraConfig({ task_type: TaskType.CAUSAL_LM, r: 8, lora_alpha: 16, lora_dropout: 0.1, ...m.lora }),
      );
      peft.train();
      const params = peft.parameters().filter((p) => p.requiresGrad);
      const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0.01 });
      const input = T.keep(T.tensor(ids, [4, 32]));
      const losses: number[] = [];
      for (let step = 0; step < 4; step++) {
        losses.push(
          T.tidy(() => {
            const loss = peft.forward({ inputIds: input, labels: input }).loss!;
            loss.backward();
            clipGradNorm(params, 0.5);
            opt.step();
            opt.zeroGrad();
            return loss.item();
          }),
        );
      }
      peft.savePretrained(join(dir, name));
      out[name] = {
        losses,
        adapter: createHash("sha256")
          .update(readFileSync(join(dir, name, "adapter_model.safetensors")))
          .digest("hex"),
      };
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(JSON.stringify(out));
}

if (process.env[CHILD_ENV] === "1") {
  await child();
} else {
  parentTests();
}

// ---- the tests ----------------------------------------------------------------------------------------------------

function parentTests(): void {
  const { native, loadError } = nativeOrReason();

  test(
    "training runs are bit-identical with 1 thread, 2 threads, and 2 adaptive threads beside a " + "busy neighbour",
    async (t) => {
      if (!native) return t.skip(`native addon not built: ${loadError}`);
      const run = promisify(execFile);
      const script = fileURLToPath(import.meta.url);
      const trainRun = async (env: Record<string, string>) => {
        const { stdout } = await run(process.execPath, [script], {
          env: { ...process.env, PEFT_TS_BACKEND: "native", [CHILD_ENV]: "1", ...env },
          timeout: 120e3,
        });
        return JSON.parse(stdout.trim().split("\n").pop()!) as Record<string, { losses: number[]; adapter: string }>;
      };
      const one = await trainRun({ PEFT_TS_THREADS: "1" });
      const two = await trainRun({ PEFT_TS_THREADS: "2", PEFT_TS_ADAPTIVE_THREADS: "0" });
      // The neighbour spins on one core (for at most 60 s, in case this process dies) while the adaptive run trains.
      const neighbour = spawn(process.execPath, ["-e", "const t = Date.now(); while (Date.now() - t < 60e3) {}"], {
        stdio: "ignore",
      });
      let adaptive: Awaited<ReturnType<typeof trainRun>>;
      try {
        adaptive = await trainRun({ PEFT_TS_THREADS: "2", PEFT_TS_ADAPTIVE_THREADS: "1" });
      } finally {
        neighbour.kill();
      }
      for (const model of ["gpt2", "llama"]) {
        const a = one[model]!;
        assert.ok(
          a.losses.every(Number.isFinite) && a.losses[3]! < a.losses[0]!,
          `${model}: training should lower the loss (${a.losses})`,
        );
        for (const [what, b] of [
          ["2 threads", two[model]!],
          ["2 adaptive threads with a busy neighbour", adaptive[model]!],
        ] as const) {
          assert.deepEqual(b.losses, a.losses, `${model}: losses with ${what} vs 1 thread`);
          assert.equal(b.adapter, a.adapter, `${model}: adapter_model.safetensors with ${what} vs 1 thread`);
        }
      }
    },
  );

  /**
   * Makes the inputs once, then runs the computation with 1, 2 and 3 threads and asserts bit-identical outputs.
   * The adaptive thread count is off meanwhile, so that on a busy machine n threads still means n.
   */
  function sameAcrossThreads(name: string, setup: () => (nb: Backend) => Float32Array[]): void {
    test(`native kernels are bit-identical across thread counts: ${name}`, (t) => {
      if (!native) return t.skip(`native addon not built: ${loadError}`);
      const before = threads();
      const compute = setup();
      setAdaptiveThreads(false);
      try {
        const results = [1, 2, 3].map((n) => {
          setThreads(n);
          return compute(native!);
        });
        for (const [i, r] of results.entries()) {
          if (i === 0) continue;
          r.forEach((out, j) => {
            assertBitIdentical(out, results[0]![j]!, `${name}: output ${j} with ${i + 1} threads vs 1 thread`);
          });
        }
      } finally {
        setThreads(before);
        setAdaptiveThreads(process.env["PEFT_TS_ADAPTIVE_THREADS"] !== "0");
      }
    });
  }

  let seed = 100;
  /** n values in [lo, hi) from a linear congruential generator (fast enough for millions of values). */
  const rand = (n: number, lo = -1, hi = 1): Storage => {
    const out = new Float32Array(n);
    let s = seed++ >>> 0;
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      out[i] = lo + ((hi - lo) * (s >>> 8)) / 16777216;
    }
    return new CpuStorage("float32", out);
  };
  const zeros = (n: number): Storage => new CpuStorage("float32", new Float32Array(n));
  const data = (s: Storage) => s.data as Float32Array;
  const contiguous = (s: Storage, shape: number[]): View => {
    const strides = shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));
    return { storage: s, shape, strides, offset: 0 };
  };

  /** out = A·B of one shape class (operands made once, so every thread count multiplies the same values). */
  function gemmCase(
    name: string,
    m: number,
    k: number,
    n: number,
    opts: { transA?: boolean; transB?: boolean; batch?: number; bias?: boolean } = {},
  ) {
    const batch = opts.batch ?? 1;
    sameAcrossThreads(`gemm ${name} (${batch > 1 ? `${batch}×` : ""}${m}×${k}×${n})`, () => {
      const a = rand(batch * m * k),
        b = rand(batch * k * n),
        bias = opts.bias ? rand(n) : null;
      return (nb) => {
        const out = zeros(batch * m * n);
        const spec: GemmSpec = {
          a,
          aOffset: 0,
          transA: opts.transA ?? false,
          lda: opts.transA ? m : k,
          aBatchStrides: batch > 1 ? [m * k] : [],
          b,
          bOffset: 0,
          transB: opts.transB ?? false,
          ldb: opts.transB ? k : n,
          bBatchStrides: batch > 1 ? [k * n] : [],
          batchShape: batch > 1 ? [batch] : [],
          m,
          n,
          k,
          out,
          accumulate: false,
          bias,
        };
        nb.gemm(spec);
        return [data(out)];
      };
    });
  }
  gemmCase("big (BLAS-sized in every dimension)", 512, 768, 768, { bias: true });
  gemmCase("k between one and two BLAS blocks", 256, 500, 384);
  gemmCase("weight gradient (A transposed)", 384, 512, 256, { transA: true });
  gemmCase("input gradient (B transposed)", 512, 256, 384, { transB: true });
  gemmCase("LoRA down projection (skinny n)", 512, 768, 8);
  gemmCase("LoRA up projection (skinny k)", 512, 8, 768);
  gemmCase("attention heads (batched)", 64, 32, 64, { batch: 48 });
  gemmCase("a few big batch items", 256, 256, 256, { batch: 3 });
  gemmCase("decoding rows, whole rows of B", 4, 4096, 256);
  gemmCase("decoding rows, B transposed", 2, 1024, 4096, { transB: true });
  gemmCase("decoding rows, odd sizes (partial vectors of columns)", 5, 201, 3001);
  gemmCase("decoding rows, odd sizes, B transposed (partial vectors of k)", 7, 61, 20001, { transB: true });

  // Sizes: just above two grains of a kernel's work (common.h), where the old code split the work by thread count.
  sameAcrossThreads("sum, max and min of everything", () => {
    const x = contiguous(rand(2_200_017), [2_200_017]);
    return (nb) =>
      (["sum", "max", "min"] as const).map((op) => {
        const out = zeros(1);
        nb.reduce(op, x, [false], out);
        return data(out);
      });
  });
  sameAcrossThreads(
    "sum of everything with cancellation (±2⁶⁰ at both ends: the order of the partial sums shows)",
    () => {
      const n = 2_200_017,
        x = rand(n, 0, 1);
      data(x)[0] = 2 ** 60;
      data(x)[n - 1] = -(2 ** 60);
      return (nb) => {
        const out = zeros(1);
        nb.reduce("sum", contiguous(x, [n]), [false], out);
        return [data(out)];
      };
    },
  );
  sameAcrossThreads("row sums, column sums (the gradient of a broadcast bias)", () => {
    const x = contiguous(rand(2048 * 1100), [2048, 1100]);
    return (nb) => {
      const rows = zeros(2048),
        cols = zeros(1100);
      nb.reduce("sum", x, [true, false], rows);
      nb.reduce("sum", x, [false, true], cols);
      return [data(rows), data(cols)];
    };
  });
  const [rows, cols] = [2048, 1100];
  sameAcrossThreads("layer norm and its gradients", () => {
    const x = rand(rows * cols),
      w = rand(cols),
      b = rand(cols),
      dy = rand(rows * cols);
    return (nb) => {
      const out = zeros(rows * cols),
        mean = zeros(rows),
        rstd = zeros(rows),
        dx = zeros(rows * cols),
        dw = zeros(cols),
        db = zeros(cols);
      nb.layerNorm(x, w, b, rows, cols, 1e-5, out, mean, rstd);
      nb.layerNormGrad(x, w, mean, rstd, dy, rows, cols, dx, dw, db);
      return [data(out), data(dx), data(dw), data(db)];
    };
  });
  sameAcrossThreads("RMS norm and its gradients", () => {
    const x = rand(rows * cols),
      w = rand(cols),
      dy = rand(rows * cols);
    return (nb) => {
      const out = zeros(rows * cols),
        rstd = zeros(rows),
        dx = zeros(rows * cols),
        dw = zeros(cols);
      nb.rmsNorm(x, w, rows, cols, 1e-6, out, rstd);
      nb.rmsNormGrad(x, w, rstd, dy, rows, cols, dx, dw);
      return [data(out), data(dx), data(dw)];
    };
  });
  sameAcrossThreads("softmax, masked softmax, cross-entropy and their gradients", () => {
    const [r, c] = [512, 1000];
    const x = rand(r * c, -8, 8),
      dy = rand(r * c),
      mask = rand(c, -4, 0),
      dLoss = rand(r);
    const targets = new CpuStorage(
      "int32",
      Int32Array.from({ length: r }, (_, i) => (i * 37) % c),
    );
    return (nb) => {
      const y = zeros(r * c),
        dx = zeros(r * c),
        masked = zeros(r * c),
        loss = zeros(r),
        lse = zeros(r),
        dl = zeros(r * c);
      nb.softmax(x, r, c, false, y);
      nb.softmaxGrad(y, dy, r, c, false, dx);
      nb.maskedSoftmax(x, [r, c], { storage: mask, shape: [r, c], strides: [0, 1], offset: 0 }, masked);
      nb.crossEntropy(x, targets, r, c, -100, loss, lse);
      nb.crossEntropyGrad(x, targets, lse, dLoss, r, c, -100, dl);
      return [data(y), data(dx), data(masked), data(loss), data(dl)];
    };
  });
  sameAcrossThreads("AdamW", () => {
    const n = 600_001;
    const p = rand(n),
      g = rand(n),
      m = rand(n, 0, 0.1),
      v = rand(n, 0, 0.1);
    return (nb) => {
      const [pc, mc, vc] = [p, m, v].map((s) => new CpuStorage("float32", data(s).slice())) as [
        Storage,
        Storage,
        Storage,
      ];
      nb.adamw(pc, g, mc, vc, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 3 });
      return [data(pc), data(mc), data(vc)];
    };
  });
}

/** Assert that two float32 arrays hold the very same bits (NaNs included), naming the first difference. */
function assertBitIdentical(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  let differ = 0,
    first = -1;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) {
      differ++;
      if (first < 0) first = i;
    }
  }
  if (differ > 0)
    assert.fail(
      `${what}: ${differ} of ${a.length} values differ, first at [${first}]: ${actual[first]} vs ${expected[first]}`,
    );
}
