/**
 * Export to llama.cpp's GGUF files: a whole model (weights, hyper-parameters, byte-level BPE tokenizer) as
 * convert_hf_to_gguf.py writes it, and a LoRA adapter as convert_lora_to_gguf.py writes it. Names, metadata keys
 * and the LLaMA query/key row permutation follow llama.cpp's conversion scripts and gguf-py's constants.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { writeGguf, type GgmlType, type GgufTensor, type GgufValue } from "../io/gguf.js";
import { readJsonObject } from "../io/json.js";
import { loadSafetensors } from "../io/safetensors.js";
import type { PreTrainedModel } from "../models/pretrained.js";
import type { PreTrainedTokenizer } from "../tokenizers/index.js";
import { ConfigError, ModelMismatchError } from "../errors.js";

/** A config.json object (HF field names). */
type HfConfig = Readonly<Record<string, unknown>>;

/** GGUF weight types a user can ask for (convert_hf_to_gguf's --outtype). */
export type GgufOutType = "f32" | "f16" | "bf16" | "q8_0";

const TENSOR_TYPE: Record<GgufOutType, GgmlType> = { f32: "F32", f16: "F16", bf16: "BF16", q8_0: "Q8_0" };
/** llama_ftype values (general.file_type). */
const FILE_TYPE: Record<GgufOutType, number> = { f32: 0, f16: 1, q8_0: 7, bf16: 32 };

/** How one architecture maps to llama.cpp: its GGUF name, hyper-parameters and tensor names. */
interface GgufArchitecture {
  arch: "llama" | "qwen2" | "gpt2";
  hparams(c: HfConfig): [string, GgufValue][];
  /** The GGUF name of an HF tensor, or an error naming it. */
  tensorName(hfName: string): string;
  /** HF weights stored (in, out) (GPT-2's Conv1D), transposed on export. */
  transposed?(hfName: string): boolean;
  /** Rows of q/k projections permuted for llama.cpp's interleaved rotary embedding: the head count to use. */
  permutedHeads?(hfName: string, c: HfConfig): number | null;
  /** Whether the output head is written (untied models), or llama.cpp reuses the token embeddings. */
  writesOutput(c: HfConfig): boolean;
}

const u32 = (value: number): GgufValue => ({ type: "uint32", value });
const f32 = (value: number): GgufValue => ({ type: "float32", value });
const num = (c: HfConfig, key: string): number => {
  const v = c[key];
  if (typeof v !== "number") throw new ConfigError(`GGUF export: config.json has no numeric "${key}"`);
  return v;
};

/** Rename by the first matching pattern; the name is refused when none matches (nothing is dropped silently). */
function renamer(rules: [RegExp, string][]): (hfName: string) => string {
  return (hfName) => {
    for (const [pattern, to] of rules) if (pattern.test(hfName)) return hfName.replace(pattern, to);
    throw new ModelMismatchError(`GGUF export: no llama.cpp name for tensor "${hfName}"`);
  };
}

const LLAMA_TENSORS = renamer([
  [/^model\.embed_tokens\.weight$/, "token_embd.weight"],
  [/^model\.norm\.weight$/, "output_norm.weight"],
  [/^lm_head\.weight$/, "output.weight"],
  [/^model\.layers\.(\d+)\.input_layernorm\.weight$/, "blk.$1.attn_norm.weight"],
  [/^model\.layers\.(\d+)\.post_attention_layernorm\.weight$/, "blk.$1.ffn_norm.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)$/, "blk.$1.attn_q.$2"],
  [/^model\.layers\.(\d+)\.self_attn\.k_proj\.(weight|bias)$/, "blk.$1.attn_k.$2"],
  [/^model\.layers\.(\d+)\.self_attn\.v_proj\.(weight|bias)$/, "blk.$1.attn_v.$2"],
  [/^model\.layers\.(\d+)\.self_attn\.o_proj\.(weight|bias)$/, "blk.$1.attn_output.$2"],
  [/^model\.layers\.(\d+)\.mlp\.gate_proj\.weight$/, "blk.$1.ffn_gate.weight"],
  [/^model\.layers\.(\d+)\.mlp\.up_proj\.weight$/, "blk.$1.ffn_up.weight"],
  [/^model\.layers\.(\d+)\.mlp\.down_proj\.weight$/, "blk.$1.ffn_down.weight"],
]);

function llamaFamily(arch: "llama" | "qwen2"): GgufArchitecture {
  return {
    arch,
    hparams: (c) => {
      const heads = num(c, "num_attention_heads");
      const scaling = c["rope_scaling"] as { type?: string; rope_type?: string; factor?: number } | null | undefined;
      const ropeType = scaling?.rope_type ?? scaling?.type;
      if (scaling && ropeType !== "linear") {
        throw new ConfigError(
          `GGUF export: rope_scaling type "${String(ropeType)}" is not supported yet (only none and "linear")`,
        );
      }
      return [
        [`${arch}.vocab_size`, u32(num(c, "vocab_size"))],
        [`${arch}.context_length`, u32(num(c, "max_position_embeddings"))],
        [`${arch}.embedding_length`, u32(num(c, "hidden_size"))],
        [`${arch}.block_count`, u32(num(c, "num_hidden_layers"))],
        [`${arch}.feed_forward_length`, u32(num(c, "intermediate_size"))],
        [
          `${arch}.rope.dimension_count`,
          u32(typeof c["head_dim"] === "number" ? c["head_dim"] : num(c, "hidden_size") / heads),
        ],
        [`${arch}.attention.head_count`, u32(heads)],
        [
          `${arch}.attention.head_count_kv`,
          u32(typeof c["num_key_value_heads"] === "number" ? c["num_key_value_heads"] : heads),
        ],
        [`${arch}.attention.layer_norm_rms_epsilon`, f32(num(c, "rms_norm_eps"))],
        [`${arch}.rope.freq_base`, f32(typeof c["rope_theta"] === "number" ? c["rope_theta"] : 10000)],
        ...(scaling
          ? ([
              [`${arch}.rope.scaling.type`, { type: "string", value: "linear" }],
              [`${arch}.rope.scaling.factor`, f32(scaling.factor ?? 1)],
            ] as [string, GgufValue][])
          : []),
      ];
    },
    tensorName: LLAMA_TENSORS,
    // HF's LLaMA rotates halves of each head (NeoX style); llama.cpp's "llama" rotates adjacent pairs, so
    // convert_hf_to_gguf permutes the query/key rows. Qwen2 runs in llama.cpp's NeoX mode and needs no permutation.
    permutedHeads: (hfName, c) => {
      if (arch !== "llama") return null;
      if (/\.q_proj\.(weight|bias)$/.test(hfName)) return num(c, "num_attention_heads");
      if (/\.k_proj\.(weight|bias)$/.test(hfName))
        return typeof c["num_key_value_heads"] === "number" ? c["num_key_value_heads"] : num(c, "num_attention_heads");
      return null;
    },
    writesOutput: (c) => c["tie_word_embeddings"] !== true,
  };
}

const GPT2: GgufArchitecture = {
  arch: "gpt2",
  hparams: (c) => [
    ["gpt2.block_count", u32(num(c, "n_layer"))],
    ["gpt2.context_length", u32(num(c, "n_positions"))],
    ["gpt2.embedding_length", u32(num(c, "n_embd"))],
    ["gpt2.feed_forward_length", u32(typeof c["n_inner"] === "number" ? c["n_inner"] : 4 * num(c, "n_embd"))],
    ["gpt2.attention.head_count", u32(num(c, "n_head"))],
    ["gpt2.attention.layer_norm_epsilon", f32(num(c, "layer_norm_epsilon"))],
  ],
  tensorName: renamer([
    [/^transformer\.wte\.weight$/, "token_embd.weight"],
    [/^transformer\.wpe\.weight$/, "position_embd.weight"],
    [/^transformer\.ln_f\.(weight|bias)$/, "output_norm.$1"],
    [/^lm_head\.weight$/, "output.weight"],
    [/^transformer\.h\.(\d+)\.ln_1\.(weight|bias)$/, "blk.$1.attn_norm.$2"],
    [/^transformer\.h\.(\d+)\.ln_2\.(weight|bias)$/, "blk.$1.ffn_norm.$2"],
    [/^transformer\.h\.(\d+)\.attn\.c_attn\.(weight|bias)$/, "blk.$1.attn_qkv.$2"],
    [/^transformer\.h\.(\d+)\.attn\.c_proj\.(weight|bias)$/, "blk.$1.attn_output.$2"],
    [/^transformer\.h\.(\d+)\.mlp\.c_fc\.(weight|bias)$/, "blk.$1.ffn_up.$2"],
    [/^transformer\.h\.(\d+)\.mlp\.c_proj\.(weight|bias)$/, "blk.$1.ffn_down.$2"],
  ]),
  transposed: (hfName) => /\.(c_attn|c_proj|c_fc)\.weight$/.test(hfName),
  // llama.cpp's gpt2 graph reads the output head from "output.weight", so the tied head is written as a copy.
  writesOutput: () => true,
};

const ARCHITECTURES: Record<string, GgufArchitecture> = {
  LlamaForCausalLM: llamaFamily("llama"),
  MistralForCausalLM: llamaFamily("llama"),
  Qwen2ForCausalLM: llamaFamily("qwen2"),
  GPT2LMHeadModel: GPT2,
};

/** The GGUF mapping of a model's architecture, or an error listing the supported ones. */
function architectureOf(c: HfConfig): GgufArchitecture {
  const name = (c["architectures"] as string[] | undefined)?.[0];
  const a = name ? ARCHITECTURES[name] : undefined;
  if (!a)
    throw new ConfigError(
      `GGUF export supports ${Object.keys(ARCHITECTURES).join(", ")}; this model is ` +
        `${name ?? "of unknown architecture"}`,
    );
  return a;
}

/** convert_hf_to_gguf's permute: per head, rows (2, d/2) become (d/2, 2), for a [rows, cols] matrix. */
function permuteRows(data: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const headDim = rows / heads;
  const half = headDim / 2;
  const out = new Float32Array(data.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < 2; j++) {
      for (let k = 0; k < half; k++) {
        const from = h * headDim + j * half + k;
        const to = h * headDim + k * 2 + j;
        out.set(data.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return out;
}

function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

/** An HF tensor in llama.cpp's orientation and row order: shape [out, in] (or 1-D). */
function toLlamaLayout(
  a: GgufArchitecture,
  c: HfConfig,
  hfName: string,
  shape: readonly number[],
  data: Float32Array,
): { shape: number[]; data: Float32Array } {
  let s = [...shape];
  let d = data;
  if (a.transposed?.(hfName) && s.length === 2) {
    d = transpose(d, s[0]!, s[1]!);
    s = [s[1]!, s[0]!];
  }
  const heads = a.permutedHeads?.(hfName, c);
  if (heads) d = permuteRows(d, s[0]!, s.length === 2 ? s[1]! : 1, heads);
  return { shape: s, data: d };
}

/** general.* keys shared by models and adapters. */
function generalKeys(
  a: GgufArchitecture,
  type: "model" | "adapter",
  name: string,
  outType: GgufOutType,
): [string, GgufValue][] {
  return [
    ["general.architecture", { type: "string", value: a.arch }],
    ["general.type", { type: "string", value: type }],
    ["general.name", { type: "string", value: name }],
    ["general.file_type", u32(FILE_TYPE[outType])],
    ["general.quantization_version", u32(2)],
  ];
}

// The pre-tokenizer regexes llama.cpp knows by name (tokenizer.ggml.pre), as tokenizer.json files spell them.
const QWEN2_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| " +
  "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| " +
  "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** tokenizer.ggml.pre for a byte-level BPE tokenizer.json: which of llama.cpp's pre-tokenizers it uses. */
function preTokenizerName(tokenizerJson: Record<string, unknown>): string {
  const pre = tokenizerJson["pre_tokenizer"] as {
    type?: string;
    use_regex?: boolean;
    pretokenizers?: { type?: string; pattern?: { Regex?: string } }[];
  } | null;
  if (pre?.type === "ByteLevel" && pre.use_regex !== false) return "gpt-2";
  const split = pre?.pretokenizers?.find((p) => p.type === "Split")?.pattern?.Regex;
  if (split === QWEN2_SPLIT) return "qwen2";
  if (split === LLAMA3_SPLIT) return "llama-bpe";
  throw new ConfigError(
    "GGUF export: the tokenizer's pre-tokenizer is none that llama.cpp knows by name (GPT-2 " +
      "byte-level, Qwen2 or Llama 3 split); " +
      "llama.cpp would tokenize text differently",
  );
}

/** tokenizer.ggml.* keys of a byte-level BPE tokenizer (tokenizer.json "model.type" BPE), as convert_hf_to_gguf writes them. */
function tokenizerKeys(
  tokenizer: PreTrainedTokenizer,
  tokenizerJson: Record<string, unknown>,
  vocabSize: number,
): [string, GgufValue][] {
  const model = tokenizerJson["model"] as {
    type?: string;
    merges?: (string | [string, string])[];
    byte_fallback?: boolean;
  };
  if (model?.type !== "BPE" || model.byte_fallback) {
    throw new ConfigError(
      "GGUF export supports byte-level BPE tokenizers (GPT-2, Qwen2, Llama 3 style); this tokenizer.json is not one",
    );
  }
  const vocab = tokenizer.getVocab();
  const special = new Set(tokenizer.allSpecialIds);
  const added = new Set(((tokenizerJson["added_tokens"] as { id: number }[] | undefined) ?? []).map((t) => t.id));
  const tokens = new Array<string>(vocabSize);
  const types = new Int32Array(vocabSize).fill(5); // UNUSED, for ids past the tokenizer's (padding rows of the embedding)
  for (let i = 0; i < vocabSize; i++) tokens[i] = `[PAD${i}]`;
  for (const [token, id] of vocab) {
    if (id >= vocabSize)
      throw new ModelMismatchError(
        `GGUF export: token id ${id} ("${token}") is outside the model's vocab_size ${vocabSize}`,
      );
    tokens[id] = token;
    types[id] = special.has(id) || added.has(id) ? 3 /* CONTROL */ : 1 /* NORMAL */;
  }
  const merges = (model.merges ?? []).map((m) => (typeof m === "string" ? m : m.join(" ")));
  const ids = (["bos", "eos", "unk", "pad"] as const).map((k) => [k, tokenizer[`${k}TokenId`]] as const);
  const withSpecials = tokenizer.encode("a");
  const addsBos = tokenizer.bosTokenId !== null && withSpecials[0] === tokenizer.bosTokenId;
  const keys: [string, GgufValue][] = [
    ["tokenizer.ggml.model", { type: "string", value: "gpt2" }],
    ["tokenizer.ggml.pre", { type: "string", value: preTokenizerName(tokenizerJson) }],
    ["tokenizer.ggml.tokens", { type: "string[]", value: tokens }],
    ["tokenizer.ggml.token_type", { type: "int32[]", value: types }],
    ["tokenizer.ggml.merges", { type: "string[]", value: merges }],
  ];
  const keyName = {
    bos: "bos_token_id",
    eos: "eos_token_id",
    unk: "unknown_token_id",
    pad: "padding_token_id",
  } as const;
  for (const [k, id] of ids) if (id !== null && id >= 0) keys.push([`tokenizer.ggml.${keyName[k]}`, u32(id)]);
  keys.push(["tokenizer.ggml.add_bos_token", { type: "bool", value: addsBos }]);
  const template = tokenizer.chatTemplate;
  if (typeof template === "string") keys.push(["tokenizer.chat_template", { type: "string", value: template }]);
  return keys;
}

/** Options of exportModelToGguf. */
export interface GgufModelExportOptions {
  /** Weight type of 2-D tensors (norms and biases stay float32, as llama.cpp's converter does); default "f16". */
  outType?: GgufOutType;
  /** general.name; default the model folder's name. */
  name?: string;
}

/**
 * Write a causal LM (LLaMA, Mistral, Qwen2, GPT-2) with its tokenizer as a GGUF model file for llama.cpp/Ollama.
 * `tokenizerDir` holds the tokenizer.json the tokenizer was loaded from. Returns the tensor names written.
 */
export function exportModelToGguf(
  model: PreTrainedModel,
  tokenizer: PreTrainedTokenizer,
  tokenizerDir: string,
  path: string,
  opts: GgufModelExportOptions = {},
): string[] {
  const config = { ...model.config, architectures: [model.architecture] };
  const a = architectureOf(config);
  const outType = opts.outType ?? "f16";
  const tokenizerJson = JSON.parse(readFileSync(join(tokenizerDir, "tokenizer.json"), "utf8")) as Record<
    string,
    unknown
  >;
  const metadata = new Map<string, GgufValue>([
    ...generalKeys(
      a,
      "model",
      opts.name ??
        String(model.nameOrPath ?? "peft-ts model")
          .split("/")
          .pop()!,
      outType,
    ),
    ...a.hparams(config),
    ...tokenizerKeys(tokenizer, tokenizerJson, num(config, "vocab_size")),
  ]);
  const tensors: GgufTensor[] = [];
  for (const [hfName, t] of model.stateDict()) {
    if (hfName === "lm_head.weight" && !a.writesOutput(config)) continue;
    const { shape, data } = toLlamaLayout(a, config, hfName, t.shape, Float32Array.from(t.dataSync()));
    const type: GgmlType =
      shape.length < 2
        ? "F32"
        : outType === "q8_0" && shape[shape.length - 1]! % 32 !== 0
          ? "F16"
          : TENSOR_TYPE[outType];
    tensors.push({ name: a.tensorName(hfName), shape, type, data });
  }
  writeGguf(path, metadata, tensors);
  return tensors.map((t) => t.name);
}

/** Options of exportLoraToGguf. */
export interface GgufAdapterExportOptions {
  /** Type of the lora_a/lora_b tensors; default "f32". */
  outType?: Exclude<GgufOutType, "q8_0">;
  /** general.name; default the adapter folder's name. */
  name?: string;
}

/**
 * Write a LoRA adapter folder (HF PEFT format) as a llama.cpp GGUF adapter (`general.type = adapter`,
 * `adapter.type = lora`, `blk.N.<tensor>.weight.lora_a`/`.lora_b`) for the base model whose config.json is
 * `baseConfig`. llama.cpp scales every layer by adapter.lora.alpha / rank; layers whose peft scaling differs
 * (rsLoRA, rank_pattern, alpha_pattern) get the difference folded into lora_b, so the product is peft's.
 */
export function exportLoraToGguf(
  adapterDir: string,
  baseConfig: HfConfig,
  path: string,
  opts: GgufAdapterExportOptions = {},
): string[] {
  const a = architectureOf(baseConfig);
  const cfg = readJsonObject(join(adapterDir, "adapter_config.json"));
  if (cfg["peft_type"] !== "LORA")
    throw new ConfigError(`GGUF adapters hold LoRA only; this adapter is ${String(cfg["peft_type"])}`);
  for (const [field, ok] of [
    ["use_dora", !cfg["use_dora"]],
    ["bias", (cfg["bias"] ?? "none") === "none"],
    ["modules_to_save", !(cfg["modules_to_save"] as unknown[] | null)?.length],
  ] as const) {
    if (!ok)
      throw new ConfigError(
        `GGUF export: llama.cpp adapters cannot hold "${field}": ${JSON.stringify(cfg[field])}; ` +
          `merge the adapter instead (peft export gguf --model … --adapter … --merge)`,
      );
  }
  const alpha = Number(cfg["lora_alpha"]);
  const r = Number(cfg["r"]);
  const rankPattern = (cfg["rank_pattern"] ?? {}) as Record<string, number>;
  const alphaPattern = (cfg["alpha_pattern"] ?? {}) as Record<string, number>;
  const patternValue = (pattern: Record<string, number>, key: string, fallback: number) => {
    const hit = Object.keys(pattern).find((p) => new RegExp(`(.*\\.)?${p}$`).test(key));
    return hit === undefined ? fallback : pattern[hit]!;
  };
  const weights = loadSafetensors(join(adapterDir, "adapter_model.safetensors"));
  const pairs = new Map<string, { A?: Float32Array; B?: Float32Array; aShape?: number[]; bShape?: number[] }>();
  try {
    for (const [key, t] of weights) {
      const m = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/.exec(key);
      if (!m)
        throw new ConfigError(
          `GGUF export: tensor "${key}" is not a LoRA A/B matrix of a Linear layer (embedding LoRA cannot be exported)`,
        );
      const entry = pairs.get(m[1]!) ?? {};
      entry[m[2] as "A" | "B"] = Float32Array.from(t.dataSync());
      entry[m[2] === "A" ? "aShape" : "bShape"] = [...t.shape];
      pairs.set(m[1]!, entry);
    }
  } finally {
    for (const t of weights.values()) t.dispose();
  }
  const tensors: GgufTensor[] = [];
  const type: GgmlType = TENSOR_TYPE[opts.outType ?? "f32"];
  for (const [module, { A, B, aShape, bShape }] of pairs) {
    if (!A || !B || !aShape || !bShape) throw new ConfigError(`GGUF export: ${module} has only one of lora_A/lora_B`);
    const rank = aShape[0]!;
    const layerAlpha = patternValue(alphaPattern, module, alpha);
    const layerRank = patternValue(rankPattern, module, r);
    const scaling = cfg["use_rslora"] ? layerAlpha / Math.sqrt(layerRank) : layerAlpha / layerRank;
    const fold = scaling / (alpha / rank);
    const hfName = `${module}.weight`;
    // B holds the output rows, so the query/key permutation applies to it alone; Conv1D LoRA factors are already
    // in Linear orientation in peft's files, so no transpose applies.
    const heads = a.permutedHeads?.(hfName, baseConfig);
    let b = heads ? permuteRows(B, bShape[0]!, bShape[1]!, heads) : B;
    if (fold !== 1) b = b.map((v) => v * fold);
    const name = a.tensorName(hfName);
    tensors.push({ name: `${name}.lora_a`, shape: aShape, type, data: A });
    tensors.push({ name: `${name}.lora_b`, shape: bShape, type, data: b });
  }
  const metadata = new Map<string, GgufValue>([
    ...generalKeys(a, "adapter", opts.name ?? adapterDir.split("/").filter(Boolean).pop()!, opts.outType ?? "f32"),
    ["adapter.type", { type: "string", value: "lora" }],
    ["adapter.lora.alpha", f32(alpha)],
    ...a.hparams(baseConfig),
  ]);
  writeGguf(path, metadata, tensors);
  return tensors.map((t) => t.name);
}
