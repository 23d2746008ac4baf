/**
 * Model benchmarks, one case per process (so that peak RSS is the case's own): forward, KV-cache generation and
 * LoRA training steps of random GPT-2-small- and Qwen2-0.5B-shaped models built with AutoModelForCausalLM.fromConfig.
 *
 *   node dist/bench/models.js --case gpt2-train [--steps 10] [--warmup 2] [--batch B --seq S] [--profile]
 *
 * prints one line `RESULT {json}`. The training step is bench_peft_cpu.py's (shared/pyref): LoRA r=8, alpha=16,
 * dropout 0 on c_attn (GPT-2, fan_in_fan_out) or q_proj,v_proj (Qwen2); AdamW(lr=1e-4) over the LoRA parameters;
 * train mode (GPT-2's dropout 0.1 active); labels = input ids; step = zeroGrad + forward + backward + optimizer step,
 * each inside one memory scope as the Trainer runs it.
 */
import { readFileSync } from "node:fs";
import { AutoModelForCausalLM } from "../src/models/auto.js";
import type { PreTrainedModel } from "../src/models/pretrained.js";
import { getPeftModel, LoraConfig, TaskType, type PeftModel } from "../src/peft/index.js";
import { AdamW } from "../src/optim/index.js";
import { Conv1D, Linear, QuantizedLinear } from "../src/nn/index.js";
import { generate, type Generative } from "../src/generation/index.js";
import type { ModelOutput } from "../src/models/outputs.js";
import { autocast, manualSeed, noGrad, tensor, tidy, type Tensor } from "../src/tensor/index.js";
import type { ParameterDType } from "../src/nn/index.js";
import { isProfiling, profileReport, profileReset } from "../src/backend/index.js";
import { loadNativeBackend, threadStats, type ThreadStats } from "../src/backend/native/native-backend.js";
import { CpuStorage } from "../src/backend/pool.js";

export type ModelName = "gpt2" | "qwen2" | "qwen2.5-1.5b" | "llama3-8b";
export type Mode = "train" | "infer" | "generate";

/** The model configurations (what bench_peft_cpu.py builds). */
export const CONFIGS: Record<ModelName, Record<string, unknown>> = {
  gpt2: { model_type: "gpt2", vocab_size: 50257, n_embd: 768, n_layer: 12, n_head: 12, n_positions: 1024 },
  qwen2: {
    model_type: "qwen2",
    vocab_size: 151936,
    hidden_size: 896,
    intermediate_size: 4864,
    num_hidden_layers: 24,
    num_attention_heads: 14,
    num_key_value_heads: 2,
    max_position_embeddings: 32768,
    rope_theta: 1e6,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: true,
    use_sliding_window: false,
    attention_dropout: 0,
  },
  "qwen2.5-1.5b": {
    model_type: "qwen2",
    vocab_size: 151936,
    hidden_size: 1536,
    intermediate_size: 8960,
    num_hidden_layers: 28,
    num_attention_heads: 12,
    num_key_value_heads: 2,
    max_position_embeddings: 32768,
    rope_theta: 1e6,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: true,
    use_sliding_window: false,
    attention_dropout: 0,
  },
  "llama3-8b": {
    model_type: "llama",
    vocab_size: 128256,
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    max_position_embeddings: 8192,
    rope_theta: 500000,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: false,
  },
};

/** NF4 with double quantisation (the QLoRA paper's setting), as a BitsAndBytesConfig. */
export const NF4_DOUBLE_QUANT = {
  load_in_4bit: true,
  bnb_4bit_quant_type: "nf4",
  bnb_4bit_use_double_quant: true,
} as const;

/** Default shapes: bench_peft_cpu.py's for train/infer; generation decodes `newTokens` after a prompt of `seq`. */
export const DEFAULT_SHAPES: Record<ModelName, { train: [number, number]; infer: [number, number] }> = {
  gpt2: { train: [4, 128], infer: [4, 128] },
  qwen2: { train: [1, 128], infer: [1, 128] },
  "qwen2.5-1.5b": { train: [1, 128], infer: [1, 128] },
  "llama3-8b": { train: [1, 512], infer: [1, 512] },
};

function loraConfig(model: ModelName) {
  return model === "gpt2"
    ? LoraConfig({
        task_type: TaskType.CAUSAL_LM,
        r: 8,
        lora_alpha: 16,
        lora_dropout: 0,
        target_modules: ["c_attn"],
        fan_in_fan_out: true,
      })
    : LoraConfig({
        task_type: TaskType.CAUSAL_LM,
        r: 8,
        lora_alpha: 16,
        lora_dropout: 0,
        target_modules: ["q_proj", "v_proj"],
      });
}

/** VmHWM / VmRSS of this process in MiB. */
export function rssMiB(field: "VmHWM" | "VmRSS" = "VmHWM"): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync("/proc/self/status", "utf8"));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Weights that take part in matrix products (Linear/Conv1D, quantised or not, the LM head included; embedding lookups are not products). */
function matmulParams(model: PreTrainedModel | PeftModel): number {
  const seen = new Set<Tensor>();
  let n = 0;
  for (const [, m] of model.namedModules()) {
    if (m instanceof QuantizedLinear) n += m.inFeatures * m.outFeatures;
    else if ((m instanceof Linear || m instanceof Conv1D) && !seen.has(m.weight)) {
      seen.add(m.weight);
      n += m.weight.size;
    }
  }
  return n;
}

function attentionShape(model: ModelName): { layers: number; width: number } {
  const c = CONFIGS[model];
  return model === "gpt2"
    ? { layers: c["n_layer"] as number, width: c["n_embd"] as number }
    : { layers: c["num_hidden_layers"] as number, width: c["hidden_size"] as number };
}

/**
 * FLOPs of one training step: 2·P·tokens forward + 2·P·tokens for the input gradients (frozen weights get no weight
 * gradient; the LoRA weights' own gradients add 2·P_lora·tokens), plus attention: q·kᵀ and p·v forward (4·T·width per
 * token and layer) and their four backward products (8·T·width).
 */
export function trainingFlops(P: number, pLora: number, model: ModelName, batch: number, seq: number): number {
  const tokens = batch * seq,
    { layers, width } = attentionShape(model);
  return 4 * P * tokens + 2 * pLora * tokens + 12 * seq * width * layers * tokens;
}

/** FLOPs of one forward pass. */
export function forwardFlops(P: number, model: ModelName, batch: number, seq: number): number {
  const tokens = batch * seq,
    { layers, width } = attentionShape(model);
  return 2 * P * tokens + 4 * seq * width * layers * tokens;
}

/** Best GEMM GFLOP/s of the native backend on a transformer-sized product (the machine's limit, measured now). */
export function measureGemmGflops(m = 512, k = 768, n = 3072, repeats = 5): number {
  const b = loadNativeBackend();
  const rand = (size: number) => {
    const d = new Float32Array(size);
    for (let i = 0; i < size; i++) d[i] = ((i * 2654435761) % 1000) / 1000 - 0.5;
    return new CpuStorage("float32", d);
  };
  const spec = {
    a: rand(m * k),
    aOffset: 0,
    transA: false,
    lda: k,
    aBatchStrides: [],
    b: rand(k * n),
    bOffset: 0,
    transB: false,
    ldb: n,
    bBatchStrides: [],
    batchShape: [],
    m,
    n,
    k,
    out: new CpuStorage("float32", new Float32Array(m * n)),
    accumulate: false,
  };
  b.gemm(spec);
  let best = Infinity;
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    b.gemm(spec);
    best = Math.min(best, performance.now() - t0);
  }
  return (2 * m * n * k) / (best / 1e3) / 1e9;
}

function randomIds(batch: number, seq: number, vocab: number, seed = 1): Tensor {
  let s = seed >>> 0;
  return tensor(
    Int32Array.from({ length: batch * seq }, () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return s % vocab;
    }),
    [batch, seq],
  );
}

/** Options of one case. */
export interface CaseOptions {
  model: ModelName;
  mode: Mode;
  batch?: number;
  seq?: number;
  steps?: number;
  warmup?: number;
  /** generation: tokens to decode after the prompt (default 32); the prompt is `seq` tokens (default 16). */
  newTokens?: number;
  /** Print the per-kernel profile of the timed steps (needs PEFT_TS_PROFILE=1 in the environment). */
  profile?: boolean;
  /** The frozen weights' dtype (fromConfig's dtype, built layer by layer; default float32). */
  dtype?: ParameterDType;
  /** Mixed precision of the training step (TrainingArguments.bf16: products under bfloat16 autocast). */
  bf16?: boolean;
  /** Gradient checkpointing of the decoder layers. */
  checkpointing?: boolean;
  /** Quantise the Linear layers (NF4 with double quantisation) as they are built; other modules stay in `dtype`. */
  nf4?: boolean;
}

/** What one case measured. */
export interface CaseResult {
  case: string;
  model: ModelName;
  mode: Mode;
  batch: number;
  seq: number;
  steps: number;
  tokensPerS: number;
  sPerStepMean: number;
  sPerStepMin: number;
  phaseSPerStep: Record<string, number>;
  paramsTotal: number;
  paramsTrainable: number;
  buildS: number;
  rssAfterBuildMiB: number;
  peakRssMiB: number;
  /** Training/forward: FLOPs per step as counted above, the GEMM speed measured in this process, and the share reached. */
  flopsPerStep?: number;
  gemmGflops?: number;
  gemmShare?: number;
  newTokens?: number;
  loss?: [number, number];
  profile?: string;
  /** The adaptive thread count's counters over the timed steps (native backend). */
  threads?: ThreadStats;
}

/** Run one case in this process. */
export function runCase(o: CaseOptions): CaseResult {
  const model = o.model,
    mode = o.mode;
  const shape =
    mode === "generate" ? [o.batch ?? 1, o.seq ?? 16] : DEFAULT_SHAPES[model][mode === "train" ? "train" : "infer"];
  const B = o.batch ?? shape[0]!,
    S = o.seq ?? shape[1]!;
  const steps = o.steps ?? (mode === "train" ? 10 : mode === "infer" ? 20 : 3),
    warmup = o.warmup ?? (mode === "generate" ? 1 : 2);
  const t0 = performance.now();
  manualSeed(0);
  const base = AutoModelForCausalLM.fromConfig(CONFIGS[model], {
    dtype: o.dtype ?? "float32",
    ...(o.nf4 ? { quantizationConfig: NF4_DOUBLE_QUANT } : {}),
  });
  if (o.checkpointing) base.gradientCheckpointingEnable();
  const net: PreTrainedModel | PeftModel = mode === "generate" ? base : getPeftModel(base, loraConfig(model));
  const buildS = (performance.now() - t0) / 1e3;
  const rssAfterBuildMiB = rssMiB("VmRSS");
  const vocab = CONFIGS[model]["vocab_size"] as number;
  const ids = randomIds(B, S, vocab);
  const phase: Record<string, number> = {};
  const addPhase = (k: string, ms: number, rec: boolean) => {
    if (rec) phase[k] = (phase[k] ?? 0) + ms / 1e3;
  };
  const losses: number[] = [];
  let step: (rec: boolean) => void;
  const newTokens = o.newTokens ?? 32;
  if (mode === "train") {
    net.train();
    const opt = new AdamW(
      net.parameters().filter((p) => p.requiresGrad),
      { lr: 1e-4 },
    );
    step = (rec) =>
      tidy(() =>
        autocast(o.bf16 ? "bfloat16" : null, () => {
          const a = performance.now();
          opt.zeroGrad();
          const out = net.forward({ inputIds: ids, labels: ids }) as ModelOutput;
          const b = performance.now();
          out.loss!.backward();
          const c = performance.now();
          opt.step();
          const d = performance.now();
          losses.push(out.loss!.item());
          addPhase("fwd", b - a, rec);
          addPhase("bwd", c - b, rec);
          addPhase("opt", d - c, rec);
        }),
      );
  } else if (mode === "infer") {
    net.eval();
    step = (rec) => {
      const a = performance.now();
      noGrad(() => tidy(() => void (net.forward({ inputIds: ids }) as ModelOutput).logits.storage));
      addPhase("fwd", performance.now() - a, rec);
    };
  } else {
    net.eval();
    step = (rec) => {
      const a = performance.now();
      // eos -1: never stops early, so every run decodes exactly newTokens tokens.
      generate(net as unknown as Generative, {
        inputIds: ids,
        maxNewTokens: newTokens,
        eosTokenId: -1,
        padTokenId: 0,
      }).dispose();
      addPhase("generate", performance.now() - a, rec);
    };
  }
  for (let i = 0; i < warmup; i++) step(false);
  if (o.profile) profileReset();
  const times: number[] = [];
  const stats0 = threadStats();
  const start = performance.now();
  for (let i = 0; i < steps; i++) {
    const a = performance.now();
    step(true);
    times.push((performance.now() - a) / 1e3);
  }
  const wall = (performance.now() - start) / 1e3;
  const stats1 = threadStats();
  const threads: ThreadStats = {
    parallel: stats1.parallel - stats0.parallel,
    late: stats1.late - stats0.late,
    serial: stats1.serial - stats0.serial,
    lateMeanMs: stats1.lateMeanMs,
    lateMaxMs: stats1.lateMaxMs,
  };
  const profile =
    o.profile && isProfiling()
      ? profileReport({ wallMs: wall * 1e3, title: `profile of ${steps} ${model}-${mode} steps` })
      : undefined;
  const tokensPerStep = mode === "generate" ? B * newTokens : B * S;
  const paramsTotal = net.parameters().reduce((n, p) => n + p.size, 0);
  const paramsTrainable = net.parameters().reduce((n, p) => n + (p.requiresGrad ? p.size : 0), 0);
  const res: CaseResult = {
    case: `${model}-${mode}`,
    model,
    mode,
    batch: B,
    seq: S,
    steps,
    tokensPerS: (tokensPerStep * steps) / wall,
    sPerStepMean: wall / steps,
    sPerStepMin: Math.min(...times),
    phaseSPerStep: Object.fromEntries(Object.entries(phase).map(([k, v]) => [k, v / steps])),
    paramsTotal,
    paramsTrainable,
    buildS,
    rssAfterBuildMiB,
    peakRssMiB: rssMiB(),
    ...(mode === "generate" ? { newTokens } : {}),
    ...(losses.length ? { loss: [losses[0]!, losses[losses.length - 1]!] as [number, number] } : {}),
    ...(profile ? { profile } : {}),
    threads,
  };
  if (mode !== "generate") {
    const P = matmulParams(net);
    res.flopsPerStep = mode === "train" ? trainingFlops(P, paramsTrainable, model, B, S) : forwardFlops(P, model, B, S);
    res.gemmGflops = measureGemmGflops();
    res.gemmShare = res.flopsPerStep / (res.sPerStepMean * res.gemmGflops * 1e9);
  }
  return res;
}

function parseArgs(argv: string[]): CaseOptions {
  const get = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const num = (name: string) => (get(name) === undefined ? undefined : Number(get(name)));
  const c = get("case");
  const m = c ? /^(gpt2|qwen2|qwen2\.5-1\.5b|llama3-8b)-(train|infer|generate)$/.exec(c) : null;
  if (!m) throw new Error(`--case must be gpt2|qwen2|qwen2.5-1.5b|llama3-8b - train|infer|generate, got ${c}`);
  const o: CaseOptions = {
    model: m[1] as ModelName,
    mode: m[2] as Mode,
    profile: argv.includes("--profile"),
    bf16: argv.includes("--bf16"),
    checkpointing: argv.includes("--checkpointing"),
    nf4: argv.includes("--nf4"),
  };
  const dtype = get("dtype");
  if (dtype !== undefined) o.dtype = dtype as ParameterDType;
  for (const k of ["batch", "seq", "steps", "warmup", "newTokens"] as const) {
    const v = num(k === "newTokens" ? "new-tokens" : k);
    if (v !== undefined) o[k] = v;
  }
  return o;
}

if (process.argv[1] && /models\.js$/.test(process.argv[1]) && process.argv.includes("--case")) {
  const res = runCase(parseArgs(process.argv.slice(2)));
  if (res.profile) console.error(res.profile);
  console.log(`RESULT ${JSON.stringify(res)}`);
}
