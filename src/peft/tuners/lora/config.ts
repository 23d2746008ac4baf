/** LoraConfig: HF peft 0.15's fields and defaults, validated with clear errors. */
import { check, configBuilder, PeftType, type PeftConfig } from "../../config.js";

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
  megatron_config: unknown;
  megatron_core: string;
  trainable_token_indices: unknown;
  loftq_config: Record<string, unknown>;
  eva_config: unknown;
  corda_config: unknown;
  use_dora: boolean;
  layer_replication: unknown;
  lora_bias: boolean;
}

/** Defaults of every LoRA field (peft 0.15.2). */
export const LORA_DEFAULTS = {
  r: 8, target_modules: null, exclude_modules: null, lora_alpha: 8, lora_dropout: 0, fan_in_fan_out: false, bias: "none",
  use_rslora: false, modules_to_save: null, init_lora_weights: true, layers_to_transform: null, layers_pattern: null,
  rank_pattern: {}, alpha_pattern: {}, megatron_config: null, megatron_core: "megatron.core", trainable_token_indices: null,
  loftq_config: {}, eva_config: null, corda_config: null, use_dora: false, layer_replication: null, lora_bias: false,
} as const;

/** Checks shared by LoRA-like configs (LoRA, AdaLoRA). */
export function validateLoraFields(c: LoraConfig): void {
  check(Number.isInteger(c.r) && c.r > 0, `\`r\` should be a positive integer value but the value passed is ${c.r}`);
  check(typeof c.lora_alpha === "number" && Number.isFinite(c.lora_alpha), `lora_alpha must be a number, got ${JSON.stringify(c.lora_alpha)}`);
  check(["none", "all", "lora_only"].includes(c.bias), `bias must be "none", "all" or "lora_only", got "${c.bias}"`);
  check(c.lora_dropout >= 0 && c.lora_dropout < 1, `lora_dropout must be in [0, 1), got ${c.lora_dropout}`);
  check(!(typeof c.target_modules === "string" && c.layers_to_transform !== null), "`layers_to_transform` cannot be used when `target_modules` is a str.");
  check(!(typeof c.target_modules === "string" && c.layers_pattern !== null), "`layers_pattern` cannot be used when `target_modules` is a str.");
  check(!(c.layers_pattern !== null && c.layers_to_transform === null), "When `layers_pattern` is specified, `layers_to_transform` must also be specified. ");
  check(
    c.init_lora_weights === true || c.init_lora_weights === false || c.init_lora_weights === "gaussian",
    `init_lora_weights "${String(c.init_lora_weights)}" is not supported yet; use true, false or "gaussian"`,
  );
  check(!c.lora_bias, "lora_bias=true is not supported yet");
}

/** Build a LoRA config from fields over the defaults; `warnUnknown` for files written by other peft versions. */
export const makeLoraConfig = configBuilder<LoraConfig>(PeftType.LORA, LORA_DEFAULTS, validateLoraFields);

/** A LoRA config from user fields (TypeScript users) — defaults filled in, validated. */
export function LoraConfig(fields: Partial<LoraConfig> = {}): LoraConfig {
  return makeLoraConfig(fields, false);
}
