/**
 * Benchmarks: `npm run bench [-- options]`.
 *
 *   --only gemm,forward,generation,training,memory,serve   sections to run (default: all but memory and serve, which are slow)
 *   --memory-models gpt2,qwen2,qwen2.5-1.5b,llama3-8b   models of the memory section (default: all four; the 8B cases
 *                                             take tens of minutes each on 2 cores)
 *   --memory-steps N                          timed steps of each memory case after one warm-up step (default 3)
 *   --memory-variants float32,bf16,nf4        weight formats of the memory section (default: all six, float32, bf16
 *                                             and nf4 each also with "-ckpt" for gradient checkpointing). The GPT-2 row
 *                                             of the issue: --memory-models gpt2 --memory-variants float32,bf16,nf4
 *   --serve-models gpt2,qwen2 --serve-clients 1,8,32 --serve-seconds S --serve-requests N   the serve section's
 *                                             models (none: only the memory run), client counts, seconds per load point
 *                                             (default 3) and requests of its memory run (default 10000)
 *   --serve-dtypes float32,bfloat16           the served models' weight dtypes (default float32)
 *   --models gpt2,qwen2                       models of the model sections (default: both)
 *   --steps N / --infer-steps N / --warmup N  timed training / forward steps and warm-up steps (default 10 / 20 / 2)
 *   --gen-steps N --new-tokens N              timed generate() calls and tokens each decodes (default 3, 32)
 *   --no-pytorch                              skip the PyTorch + peft anchor (shared/pyref/bench_peft_cpu.py)
 *   --profile                                 print the per-kernel profile of each peft-ts case (PEFT_TS_PROFILE)
 *   --busy-neighbour                          keep one core busy with another process during the model sections (both
 *                                             peft-ts and PyTorch run beside it): a shared machine, reproducibly
 *   --baseline DIR                            also measure another checkout (built: build/Release and dist/) in the same
 *                                             run, alternating with this one: the "before" columns of a change
 *
 * Each model case runs in its own process (bench/models.ts), so its peak RSS is its own. The PyTorch anchor runs
 * the same cases right after ours (same shapes, same step), so that a noisy neighbour on a shared machine slows
 * both alike; the ratio column is peft-ts ÷ PyTorch tokens/s from this one run.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, cpus, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { formatBenchTable, gemmBench } from "./gemm.js";
import { CONFIGS, DEFAULT_SHAPES, type CaseResult, type ModelName } from "./models.js";
import { applyThreadEnvironment, blasInfo, NativeBackend, threads } from "../src/backend/native/native-backend.js";
import { createRequire } from "node:module";

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));

function packageRoot(): string {
  let dir = here;
  while (!existsSync(join(dir, "package.json"))) dir = dirname(dir);
  return dir;
}

const argv = process.argv.slice(2);
const opt = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const SECTIONS = ["gemm", "forward", "generation", "training", "memory", "serve"] as const;
const only = (opt("only") ?? SECTIONS.filter((s) => s !== "memory" && s !== "serve").join(","))
  .split(",")
  .map((s) => s.trim())
  .filter(Boolean);
for (const s of only)
  if (!(SECTIONS as readonly string[]).includes(s))
    throw new Error(`--only: unknown section "${s}"; sections: ${SECTIONS.join(", ")}`);
const models = (opt("models") ?? "gpt2,qwen2").split(",").map((s) => s.trim()) as ModelName[];
for (const m of models)
  if (m !== "gpt2" && m !== "qwen2") throw new Error(`--models: unknown model "${m}"; models: gpt2, qwen2`);
const trainSteps = Number(opt("steps") ?? 10),
  inferSteps = Number(opt("infer-steps") ?? 20),
  warmup = Number(opt("warmup") ?? 2);
const genSteps = Number(opt("gen-steps") ?? 3),
  newTokens = Number(opt("new-tokens") ?? 32);
const withPytorch = !argv.includes("--no-pytorch");
const profile = argv.includes("--profile");
const busyNeighbour = argv.includes("--busy-neighbour");
const baselineDir = opt("baseline") === undefined ? undefined : resolve(opt("baseline")!);
const baselineAddon = baselineDir && join(baselineDir, "build", "Release", "peft_ts_native.node");
if (baselineDir && (!existsSync(baselineAddon!) || !existsSync(join(baselineDir, "dist", "bench", "models.js")))) {
  throw new Error(`--baseline ${baselineDir}: build that checkout first (node-gyp rebuild and npx tsc -p . there)`);
}
const log = (line: string) => console.error(line);

const root = packageRoot();
const cpu = (() => {
  try {
    return /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? cpus()[0]?.model ?? "?";
  } catch {
    return cpus()[0]?.model ?? "?";
  }
})();
console.log(`peft-ts benchmarks, ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC`);
console.log(`machine: ${cpu}, ${cpus().length} cores; native backend: ${threads()} threads, ${blasInfo()}`);

if (only.includes("serve")) {
  const { serveBench } = await import("./serve.js");
  const list = (name: string, fallback: string) =>
    (opt(name) ?? fallback)
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
  const table = await serveBench({
    log,
    models: list("serve-models", "gpt2,qwen2"),
    dtypes: list("serve-dtypes", "float32"),
    clients: list("serve-clients", "1,8,32").map(Number),
    seconds: Number(opt("serve-seconds") ?? 3),
    requests: Number(opt("serve-requests") ?? 10000),
  });
  console.log(
    "\n### Serving (peft serve, 127.0.0.1; closed-loop streaming clients, 16-token prompts, 16 new tokens)\n",
  );
  console.log(table);
}

if (only.includes("gemm")) {
  // The baseline's addon, loaded beside ours (another file, so another module), behind this build's NativeBackend,
  // with the same thread settings (PEFT_TS_ADAPTIVE_THREADS=0 keeps both on every thread: adaptive threading is
  // per addon, and the one measured after an idle moment may run serially for its whole round).
  type Addon = ConstructorParameters<typeof NativeBackend>[0];
  const baseline = baselineAddon
    ? (() => {
        const addon = createRequire(import.meta.url)(baselineAddon) as Addon;
        applyThreadEnvironment(addon);
        return new NativeBackend(addon);
      })()
    : undefined;
  const rows = await gemmBench({ log, ...(baseline ? { baseline } : {}) });
  console.log("\n### GEMM and bandwidth\n");
  console.log(formatBenchTable(rows));
}

/** One peft-ts case in a child process (of this build, or of the baseline checkout's). */
async function oursCase(name: string, extra: string[], dir = here): Promise<CaseResult | string> {
  const script = join(dir, "models.js");
  log(`peft-ts${dir === here ? "" : " (baseline)"} ${name} ${extra.join(" ")} …`);
  try {
    const env = profile ? { ...process.env, PEFT_TS_PROFILE: process.env["PEFT_TS_PROFILE"] ?? "1" } : process.env;
    const { stdout, stderr } = await run(
      process.execPath,
      [script, "--case", name, ...extra, ...(profile ? ["--profile"] : [])],
      { env, maxBuffer: 1 << 26, timeout: 1800e3 },
    );
    if (profile && stderr.trim()) console.log(`\n\`\`\`\n${stderr.trim()}\n\`\`\``);
    const line = stdout.split("\n").find((l) => l.startsWith("RESULT "));
    if (!line) return `no result (stderr: ${stderr.trim().split("\n").pop()})`;
    return JSON.parse(line.slice(7)) as CaseResult;
  } catch (err) {
    return `failed: ${((err as Error).message ?? String(err)).split("\n").slice(-2).join(" ")}`;
  }
}

/** The PyTorch + peft numbers of one case (shared/pyref/bench_peft_cpu.py), or why there are none. */
interface TorchResult {
  tokens_per_s: number;
  peak_rss_mib: number;
  s_per_step_mean: number;
  phase_s_per_step: Record<string, number>;
  torch_threads: number;
  note?: string;
}
let torchUnavailable: string | null = null;
const pyrefDir = resolve(process.env["PYREF_DIR"] ?? join(root, "..", "shared", "pyref"));

async function torchAvailable(): Promise<string | null> {
  if (!withPytorch) return "skipped (--no-pytorch)";
  if (!existsSync(join(pyrefDir, "bench_peft_cpu.py")))
    return `skipped: ${pyrefDir}/bench_peft_cpu.py not found (set PYREF_DIR)`;
  if (!existsSync("/usr/bin/python3")) return "skipped: /usr/bin/python3 not found";
  try {
    await run("/usr/bin/python3", ["-c", "import torch"], { timeout: 120e3 });
  } catch {
    return `skipped: /usr/bin/python3 cannot import torch (run: bash ${pyrefDir}/setup.sh)`;
  }
  return null;
}

async function torchCase(name: string, batch: number, seq: number, steps: number): Promise<TorchResult | string> {
  if (torchUnavailable) return torchUnavailable;
  const dir = mkdtempSync(join(tmpdir(), "peft-ts-bench-"));
  const out = join(dir, "pyref.txt");
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const cmd =
    `source ${q(join(pyrefDir, "env.sh"))} && /usr/bin/python3 ` +
    `${q(join(pyrefDir, "bench_peft_cpu.py"))} --cases ${name} ` +
    `--steps ${steps} --infer-steps ${steps} --warmup ${warmup} --threads ${threads()} --batch ` +
    `${batch} --seq ${seq} --out ${q(out)}`;
  log(`pytorch ${name} …`);
  try {
    await run("bash", ["-c", cmd], { maxBuffer: 1 << 26, timeout: 1800e3 });
    const json = JSON.parse(readFileSync(join(dir, "pyref.json"), "utf8")) as { results: TorchResult[] };
    return json.results[0] ?? "no result";
  } catch (err) {
    return `failed: ${((err as Error).message ?? String(err)).split("\n").slice(-2).join(" ")}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The PyTorch side of one memory-table case (bench/pytorch_memory.py), or why there is none. */
async function torchMemoryCase(
  model: ModelName,
  batch: number,
  seq: number,
  steps: number,
  flags: string[],
): Promise<TorchResult | string> {
  if (torchUnavailable) return torchUnavailable;
  const dir = mkdtempSync(join(tmpdir(), "peft-ts-bench-"));
  const config = join(dir, "config.json");
  writeFileSync(config, JSON.stringify(CONFIGS[model]));
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const cmd =
    `source ${q(join(pyrefDir, "env.sh"))} && /usr/bin/python3 ` +
    `${q(join(root, "bench", "pytorch_memory.py"))} --config ${q(config)} ` +
    `--batch ${batch} --seq ${seq} --steps ${steps} --warmup 1 --threads ${threads()} ${flags.join(" ")}`;
  log(`pytorch ${model} ${flags.join(" ")} …`);
  try {
    const { stdout } = await run("bash", ["-c", cmd], { maxBuffer: 1 << 26, timeout: 3600e3 });
    const line = stdout.split("\n").find((l) => l.startsWith("RESULT "));
    return line ? (JSON.parse(line.slice(7)) as TorchResult) : "no result";
  } catch (err) {
    return `failed: ${((err as Error).message ?? String(err)).split("\n").slice(-2).join(" ")}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Parameters of a decoder config (embeddings, attention, MLP; norms neglected), to tell whether a case can fit. */
function approximateParams(c: Record<string, unknown>): number {
  const n = (k: string, alt?: string) => Number(c[k] ?? (alt ? c[alt] : undefined) ?? 0);
  const hidden = n("hidden_size", "n_embd"),
    layers = n("num_hidden_layers", "n_layer"),
    vocab = n("vocab_size");
  const heads = n("num_attention_heads", "n_head"),
    kv = n("num_key_value_heads") || heads;
  const inter = n("intermediate_size") || 4 * hidden,
    headDim = hidden / heads;
  const mlp = c["model_type"] === "gpt2" ? 2 * hidden * inter : 3 * hidden * inter;
  const embeddings = vocab * hidden * (c["tie_word_embeddings"] === false ? 2 : 1);
  return embeddings + layers * (2 * hidden * hidden + 2 * hidden * kv * headDim + mlp);
}

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
const f1 = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(1));
const mib = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? "–" : `${(v / 1024).toFixed(2)} GiB`);

/** A process that spins on one core until killed (the --busy-neighbour option). */
let neighbour: ChildProcess | null = null;
if (busyNeighbour && only.some((s) => s !== "gemm")) {
  neighbour = spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" });
  console.log("\n(a busy neighbour process spins on one core during the model sections)");
}
process.on("exit", () => neighbour?.kill());

if (only.includes("forward") || only.includes("training")) {
  torchUnavailable = await torchAvailable();
  const rows: string[] = [];
  const notes: string[] = [];
  const beforeRows: string[] = [];
  const modes = [...(only.includes("training") ? ["train"] : []), ...(only.includes("forward") ? ["infer"] : [])];
  for (const model of models) {
    for (const mode of modes) {
      const name = `${model}-${mode}`;
      const steps = mode === "train" ? trainSteps : inferSteps;
      const ours = await oursCase(name, ["--steps", String(steps), "--warmup", String(warmup)]);
      const before = baselineDir
        ? await oursCase(
            name,
            ["--steps", String(steps), "--warmup", String(warmup)],
            join(baselineDir, "dist", "bench"),
          )
        : undefined;
      if (typeof before === "string") notes.push(`${name}: baseline ${before}`);
      else if (before)
        beforeRows.push(
          `| ${name} | ${f1(typeof ours === "string" ? NaN : ours.tokensPerS)} | ${f1(before.tokensPerS)} | ` +
            `${typeof ours === "string" ? "–" : `${(ours.tokensPerS / before.tokensPerS).toFixed(2)}×`} |`,
        );
      const shape = typeof ours === "string" ? [0, 0] : [ours.batch, ours.seq];
      const torch = typeof ours === "string" ? "not run" : await torchCase(name, shape[0]!, shape[1]!, steps);
      if (typeof ours === "string") {
        rows.push(`| ${name} | – | ${ours} | | | | | | |`);
        continue;
      }
      if (ours.threads && ours.threads.parallel + ours.threads.serial > 0) {
        const th = ours.threads;
        notes.push(
          `${name}: peft-ts ran ${th.parallel} parallel regions (${th.late} with a thread > 1 ms ` +
            `late: a core held by ` +
            `another process) and ${th.serial} on one thread because of that`,
        );
      }
      const t = typeof torch === "string" ? null : torch;
      if (typeof torch === "string") notes.push(`${name}: PyTorch ${torch}`);
      else if (torch.note) notes.push(`${name}: PyTorch ${torch.note}`);
      const phases = Object.entries(ours.phaseSPerStep)
        .map(([k, v]) => `${k} ${v.toFixed(2)}`)
        .join(" / ");
      const tPhases = t
        ? Object.entries(t.phase_s_per_step)
            .map(([k, v]) => `${k} ${v.toFixed(2)}`)
            .join(" / ")
        : "–";
      rows.push(
        `| ${name} | ${ours.batch}×${ours.seq} | ${f1(ours.tokensPerS)} | ${t ? f1(t.tokens_per_s) : "–"} | ` +
          `${t ? `${(ours.tokensPerS / t.tokens_per_s).toFixed(2)}×` : "–"} | ` +
          `${mib(ours.peakRssMiB)} | ${t ? mib(t.peak_rss_mib) : "–"} | ` +
          `${ours.gemmShare !== undefined ? `${(100 * ours.gemmShare).toFixed(0)}% of ${ours.gemmGflops!.toFixed(0)}` : "–"} ` +
          `` +
          `` +
          `| ${phases} (torch: ${tPhases}) |`,
      );
      log(rows[rows.length - 1]!);
    }
  }
  console.log("\n### LoRA training and forward (tokens/s; peft-ts and PyTorch+peft side by side in this run)\n");
  console.log(
    "| case | batch×seq | peft-ts tok/s | PyTorch tok/s | ratio | peft-ts peak RSS | PyTorch " +
      "peak RSS | GEMM limit share (% of GFLOP/s) | s/step by phase |",
  );
  console.log("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
  for (const r of rows) console.log(r);
  console.log(
    "\nGEMM limit share: FLOPs per step (4·P·tokens for training — forward plus input " +
      "gradients, frozen weights get no " +
      "weight gradient — plus attention; 2·P·tokens plus attention for a forward) ÷ (s/step × " +
      "the native GEMM GFLOP/s on " +
      "512×768×3072 measured in the same process right after the steps, with as many threads as " +
      "the machine allowed then: on a " +
      "contended machine that is the one-thread rate). LoRA r=8 alpha=16 on c_attn (GPT-2) / " +
      "q_proj,v_proj (Qwen2), AdamW, train mode.",
  );
  for (const n of notes) console.log(`- ${n}`);
  if (beforeRows.length > 0) {
    console.log(
      `\n### This build against the baseline ${baselineDir} (tokens/s, each case run right after the other)\n`,
    );
    console.log("| case | this build | baseline | ratio |");
    console.log("| --- | ---: | ---: | ---: |");
    for (const r of beforeRows) console.log(r);
  }
}

if (only.includes("memory")) {
  // LoRA training (the training section's step) with float32, bf16 and NF4 (double quantisation, bf16 around it) frozen
  // weights, each with and without gradient checkpointing, built layer by layer in their final form (fromConfig);
  // beside PyTorch + peft on the same shapes in float32 and under bf16 autocast (bench/pytorch_memory.py).
  torchUnavailable ??= await torchAvailable();
  const memoryModels = (opt("memory-models") ?? "gpt2,qwen2,qwen2.5-1.5b,llama3-8b")
    .split(",")
    .map((s) => s.trim()) as ModelName[];
  const steps = Number(opt("memory-steps") ?? 3);
  const allVariants: { key: string; label: string; flags: string[]; bytesPerWeight: number; torch: string[] | null }[] =
    [
      { key: "float32", label: "float32", flags: [], bytesPerWeight: 4, torch: [] },
      {
        key: "float32-ckpt",
        label: "float32 + ckpt",
        flags: ["--checkpointing"],
        bytesPerWeight: 4,
        torch: ["--checkpointing"],
      },
      {
        key: "bf16",
        label: "bf16",
        flags: ["--dtype", "bfloat16", "--bf16"],
        bytesPerWeight: 2,
        torch: ["--bf16-autocast"],
      },
      {
        key: "bf16-ckpt",
        label: "bf16 + ckpt",
        flags: ["--dtype", "bfloat16", "--bf16", "--checkpointing"],
        bytesPerWeight: 2,
        torch: ["--bf16-autocast", "--checkpointing"],
      },
      { key: "nf4", label: "NF4", flags: ["--nf4", "--dtype", "bfloat16"], bytesPerWeight: 0.6, torch: null },
      {
        key: "nf4-ckpt",
        label: "NF4 + ckpt",
        flags: ["--nf4", "--dtype", "bfloat16", "--checkpointing"],
        bytesPerWeight: 0.6,
        torch: null,
      },
    ];
  const chosen = (opt("memory-variants") ?? allVariants.map((v) => v.key).join(",")).split(",").map((s) => s.trim());
  for (const key of chosen) {
    if (!allVariants.some((v) => v.key === key))
      throw new Error(`--memory-variants: unknown "${key}"; variants: ${allVariants.map((v) => v.key).join(", ")}`);
  }
  const variants = allVariants.filter((v) => chosen.includes(v.key));
  const rows: string[] = [];
  const ram = totalmem();
  for (const model of memoryModels) {
    if (!(model in CONFIGS))
      throw new Error(`--memory-models: unknown model "${model}"; models: ${Object.keys(CONFIGS).join(", ")}`);
    const [batch, seq] = DEFAULT_SHAPES[model].train;
    const shape = ["--batch", String(batch), "--seq", String(seq)];
    let f32Speed = Number.NaN;
    for (const v of variants) {
      // A case whose frozen weights alone would take most of this machine's memory is not started.
      const weights = approximateParams(CONFIGS[model]) * v.bytesPerWeight;
      if (weights > 0.6 * ram) {
        rows.push(
          `| ${model} | ${v.label} | ${batch}×${seq} | not run: weights alone ≈ ${gib(weights)} of ${gib(ram)} ` +
            "| | | | |",
        );
        continue;
      }
      const ours = await oursCase(`${model}-train`, [...shape, "--steps", String(steps), "--warmup", "1", ...v.flags]);
      if (typeof ours !== "string" && v.label === "float32") f32Speed = ours.tokensPerS;
      const torch =
        v.torch === null ? "– (bitsandbytes is GPU-only)" : await torchMemoryCase(model, batch!, seq!, steps, v.torch);
      const ratio = (a: number, b: number) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}×` : "–");
      const oursCols =
        typeof ours === "string"
          ? `${ours} | | `
          : `${f1(ours.tokensPerS)} | ${ratio(ours.tokensPerS, f32Speed)} | ${mib(ours.peakRssMiB)}`;
      const torchCols =
        typeof torch === "string"
          ? `${torch} | | `
          : `${f1(torch.tokens_per_s)} | ${mib(torch.peak_rss_mib)} | ` +
            (typeof ours === "string" ? "" : ratio(ours.tokensPerS, torch.tokens_per_s));
      rows.push(`| ${model} | ${v.label} | ${batch}×${seq} | ${oursCols} | ${torchCols} |`);
      log(rows[rows.length - 1]!);
    }
  }
  console.log(
    "\n### Memory: LoRA training (r=8 on q/v or c_attn; AdamW) by weight format, with and " +
      "without gradient checkpointing\n",
  );
  console.log(
    "| model | frozen weights | batch×seq | peft-ts tok/s | vs float32 | peft-ts peak RSS | PyTorch tok/s | " +
      "PyTorch peak RSS | vs PyTorch |",
  );
  console.log("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const r of rows) console.log(r);
  console.log(
    "\nbf16: frozen weights stored in bfloat16, products under bf16 autocast (inputs rounded, " +
      "float32 accumulation); NF4: " +
      "every Linear but lm_head in NF4 with double quantisation, embeddings, norms and lm_head " +
      "in bfloat16. LoRA weights and " +
      "AdamW state are float32 throughout. PyTorch columns: float32 rows in float32, bf16 rows " +
      'under torch.autocast("cpu", ' +
      "bfloat16) with float32 weights. This CPU has no bfloat16 arithmetic (AVX2, no AVX-512 " +
      "BF16): bf16 saves memory, not time.",
  );
}

if (only.includes("generation")) {
  const rows: string[] = [];
  for (const model of models) {
    for (const batch of [1, 4]) {
      const r = await oursCase(`${model}-generate`, [
        "--batch",
        String(batch),
        "--seq",
        "16",
        "--steps",
        String(genSteps),
        "--warmup",
        "1",
        "--new-tokens",
        String(newTokens),
      ]);
      rows.push(
        typeof r === "string"
          ? `| ${model} | ${batch} | ${r} | | |`
          : `| ${model} | ${batch} | ${r.seq} + ${r.newTokens} | ${f1(r.tokensPerS)} | ` +
              `${f1(r.sPerStepMean)} s | ${mib(r.peakRssMiB)} |`,
      );
      log(rows[rows.length - 1]!);
    }
  }
  console.log(
    "\n### Generation (greedy, KV cache; tokens/s = batch × new tokens ÷ generate() wall time, prompt included)\n",
  );
  console.log("| model | batch | prompt + new tokens | tok/s | s per generate() | peak RSS |");
  console.log("| --- | ---: | --- | ---: | ---: | ---: |");
  for (const r of rows) console.log(r);
}

neighbour?.kill();
