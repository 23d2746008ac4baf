/** LoraConfig: HF peft 0.15's fields and defaults in one table (type, range, help), validated with clear errors. */
import { check, configBuilder, PeftType, TARGETING_FIELDS, type MethodFields, type PeftConfig } from "../../config.js";
import {
  anyObject,
  bool,
  either,
  field,
  integer,
  listOf,
  matching,
  nullable,
  number,
  oneOf,
  recordOf,
  string,
  type ForeignField,
} from "../../../io/config-fields.js";
import { initUsesBaseWeight, loftqSettings } from "./init.js";

/** LoRA configuration (HF field names). */
export interface LoraConfig extends PeftConfig {
  r: number;
  target_modules: string | string[] | null;
  exclude_modules: string | string[] | null;
  lora_alpha: number;
  lora_dropout: number;
  fan_in_fan_out: boolean;
  bias: "none" | "all" | "lora_only";
  use_rslora: boolean;
  modules_to_save: string[] | null;
  init_lora_weights: boolean | "gaussian" | "pissa" | "olora" | "eva" | "corda" | "loftq" | string;
  layers_to_transform: number | number[] | null;
  layers_pattern: string | string[] | null;
  rank_pattern: Record<string, number>;
  alpha_pattern: Record<string, number>;
  megatron_config: Record<string, unknown> | null;
  megatron_core: string;
  trainable_token_indices: number[] | Record<string, number[]> | null;
  loftq_config: Record<string, unknown>;
  eva_config: Record<string, unknown> | null;
  corda_config: Record<string, unknown> | null;
  use_dora: boolean;
  layer_replication: [number, number][] | null;
  lora_bias: boolean;
}

const index = integer({ min: 0 });
const NOT_YET = "peft-ts does not implement it yet; remove the field (or set it to its default) to train without it";

/** Every LoRA field (peft 0.15.2): type and range, default, and what it does. */
export const LORA_FIELDS: MethodFields<LoraConfig> = {
  ...TARGETING_FIELDS,
  r: field(integer({ min: 1 }), 8, "The rank of the update matrices A [r, in] and B [out, r]."),
  lora_alpha: field(number(), 8, "The update is scaled by lora_alpha / r (lora_alpha / √r with use_rslora)."),
  lora_dropout: field(
    number({ min: 0, below: 1 }),
    0,
    "Dropout probability on the input of the LoRA path while training.",
  ),
  bias: field<"none" | "all" | "lora_only">(
    oneOf("none", "all", "lora_only"),
    "none",
    'Which biases to train: "none", "all", or those of the adapted layers ("lora_only").',
  ),
  use_rslora: field(bool, false, "Rank-stabilised LoRA: scale by lora_alpha / √r instead of lora_alpha / r."),
  init_lora_weights: field<LoraConfig["init_lora_weights"]>(
    either(
      bool,
      oneOf("gaussian", "eva", "olora", "pissa", "corda", "loftq", "orthogonal"),
      matching(/^pissa_niter_\d+$/, '"pissa_niter_<n>"'),
    ),
    true,
    'How A and B start: true (Kaiming-uniform A, zero B), "gaussian" (normal A), false (random ' +
      "B too), or a data- or SVD-based method.",
    {
      notImplemented:
        'peft-ts implements init_lora_weights true, false, "gaussian", "pissa", "pissa_niter_<n>", ' +
        '"olora" and "loftq"; EVA, CorDA and orthogonal are not yet',
      implemented: (v) => v === true || v === false || v === "gaussian" || initUsesBaseWeight(v),
    },
  ),
  rank_pattern: field<Record<string, number>>(
    recordOf(integer({ min: 1 })),
    {},
    "Module-name pattern → rank, overriding r for those modules.",
  ),
  alpha_pattern: field<Record<string, number>>(
    recordOf(number()),
    {},
    "Module-name pattern → alpha, overriding lora_alpha for those modules.",
  ),
  megatron_config: field<Record<string, unknown> | null>(
    nullable(anyObject),
    null,
    "Megatron-LM's TransformerConfig for tensor-parallel layers.",
    { notImplemented: `Megatron parallel layers: ${NOT_YET}` },
  ),
  megatron_core: field(string, "megatron.core", "The Megatron core module (used only with megatron_config)."),
  trainable_token_indices: field<LoraConfig["trainable_token_indices"]>(
    nullable(either(listOf(index), recordOf(listOf(index)))),
    null,
    "Token ids whose embedding rows are trained (a list for the input embeddings, or module name → list).",
  ),
  loftq_config: field<Record<string, unknown>>(
    anyObject,
    {},
    'LoftQ settings {loftq_bits (2, 4 or 8; default 4), loftq_iter (default 1)}; used with init_lora_weights "loftq".',
  ),
  eva_config: field<Record<string, unknown> | null>(
    nullable(anyObject),
    null,
    'EVA settings; used with init_lora_weights "eva".',
    { notImplemented: `EVA initialisation: ${NOT_YET}` },
  ),
  corda_config: field<Record<string, unknown> | null>(
    nullable(anyObject),
    null,
    'CorDA settings; used with init_lora_weights "corda".',
    { notImplemented: `CorDA initialisation: ${NOT_YET}` },
  ),
  use_dora: field(bool, false, "Weight-decomposed LoRA (DoRA): a learned magnitude per output row."),
  layer_replication: field<[number, number][] | null>(
    nullable(listOf(listOf(index))),
    null,
    "Build a deeper model by repeating ranges [start, end) of the base layers (the copies " +
      "share weights, each gets its own LoRA).",
  ),
  lora_bias: field(bool, false, "Give the B matrix a trainable bias (merged into the base layer's bias)."),
};

/** Fields of other peft versions that LoRA here does not implement (their unused values are accepted). */
export const LORA_FOREIGN: Record<string, ForeignField> = {
  runtime_config: { versions: "≥ 0.12 (GPU offloading; never saved)", default: null, inert: true },
  use_qalora: { versions: "≥ 0.16", default: false },
  qalora_group_size: { versions: "≥ 0.16", default: 16 },
  target_parameters: { versions: "≥ 0.17", default: null },
  alora_invocation_tokens: { versions: "≥ 0.18", default: null },
  arrow_config: { versions: "≥ 0.18", default: null },
  ensure_weight_tying: { versions: "≥ 0.18", default: false },
  lora_ga_config: { versions: "≥ 0.19", default: null },
  use_bdlora: { versions: "≥ 0.19", default: null },
  velora_config: { versions: "≥ 0.20", default: null },
  monteclora_config: { versions: "≥ 0.20", default: null },
  kasa_config: { versions: "≥ 0.21", default: null },
  merge_weights: { versions: "0.0.1–0.2.0", default: false },
  enable_lora: { versions: "0.0.1–0.2.0", default: null },
};

/** Checks shared by LoRA-like configs (LoRA, AdaLoRA) that span several fields. */
export function validateLoraFields(c: LoraConfig): void {
  check(
    !(typeof c.target_modules === "string" && c.layers_to_transform !== null),
    "`layers_to_transform` cannot be used when `target_modules` is a str.",
  );
  check(
    !(typeof c.target_modules === "string" && c.layers_pattern !== null),
    "`layers_pattern` cannot be used when `target_modules` is a str.",
  );
  check(
    !(c.layers_pattern !== null && c.layers_to_transform === null),
    "When `layers_pattern` is specified, `layers_to_transform` must also be specified. ",
  );
  check(
    !(c.lora_bias && c.init_lora_weights !== true && c.init_lora_weights !== false),
    `The argument lora_bias=True is only supported with init_lora_weights=True or False, got ` +
      `init_lora_weights=${JSON.stringify(c.init_lora_weights)} instead.`,
  );
  check(
    !(c.lora_bias && c.use_dora),
    "The argument lora_bias=True is not supported for DoRA, please pass use_dora=False",
  );
  if (c.init_lora_weights === "loftq") loftqSettings(c.loftq_config);
  else if (Object.keys(c.loftq_config).length > 0) {
    // peft 0.15.2 drops it with this warning too
    process.emitWarning("`loftq_config` specified but will be ignored when `init_lora_weights` is not 'loftq'.");
    c.loftq_config = {};
  }
}

/** Build a LoRA config from fields over the defaults (`fromFile`: lenient with fields of other peft versions). */
export const makeLoraConfig = configBuilder<LoraConfig>(PeftType.LORA, LORA_FIELDS, validateLoraFields, LORA_FOREIGN);

/** A LoRA config from user fields (TypeScript users) — defaults filled in, validated. */
export function LoraConfig(fields: Partial<LoraConfig> = {}): LoraConfig {
  return makeLoraConfig(fields, false);
}
