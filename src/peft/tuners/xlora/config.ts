/** XLoraConfig: peft 0.15.2's fields and defaults (X-LoRA: a classifier mixing frozen LoRA experts per token). */
import { configBuilder, PeftType, type MethodFields, type PeftConfig } from "../../config.js";
import { bool, defaultsOf, field, integer, nullable, number, recordOf, string } from "../../../io/config-fields.js";
import { ConfigError } from "../../../errors.js";

/** X-LoRA configuration (HF field names). */
export interface XLoraConfig extends PeftConfig {
  /** Hidden size of the base model (the classifier's input); peft falls back to 4096 when unset. */
  hidden_size: number | null;
  /** Expert name → LoRA adapter folder, in expert order; peft names the loaded experts "0", "1", …. */
  adapters: Record<string, string> | null;
  /** Softmax (with softmax_temperature) over the classifier's logits. */
  enable_softmax: boolean;
  /** Softmax over the entries kept by top_k_lora (peft takes it jointly over the layer's nonzero entries). */
  enable_softmax_topk: boolean;
  /** One set of logits per LoRA layer instead of one broadcast to every layer. */
  layerwise_scalings: boolean;
  /** Number of Linear layers in the classifier. */
  xlora_depth: number;
  /** Width of the classifier's hidden layers (xlora_depth > 1). */
  xlora_size: number;
  /** Dropout after each hidden layer of the classifier (xlora_depth > 1). */
  xlora_dropout_p: number;
  /** Train the LoRA experts with the classifier (frozen otherwise). */
  use_trainable_adapters: boolean;
  /** Softmax temperature (lower: sharper). */
  softmax_temperature: number;
  /** Keep only the top_k_lora experts per token (null: all). */
  top_k_lora: number | null;
  /** The scalings every expert gets in the scaling pass that feeds the classifier. */
  scaling_pass_value: number;
  /** Factor on every expert's output in the real pass. */
  global_scaling_weight: number;
}

/** Every X-LoRA field (peft 0.15.2). */
export const XLORA_FIELDS: MethodFields<XLoraConfig> = {
  hidden_size: field(
    nullable(integer({ min: 1 })),
    null,
    "Hidden size of the base model (null: 4096, with a warning, as in peft).",
  ),
  adapters: field(nullable(recordOf(string)), null, "Expert name → LoRA adapter folder (the experts, in order)."),
  enable_softmax: field(bool, true, "Softmax over the classifier's logits."),
  enable_softmax_topk: field(bool, false, "Softmax over the entries kept by top_k_lora."),
  layerwise_scalings: field(bool, false, "One set of logits per LoRA layer instead of one for all."),
  xlora_depth: field(integer({ min: 1 }), 1, "Number of Linear layers in the classifier."),
  xlora_size: field(integer({ min: 1 }), 2048, "Width of the classifier's hidden layers (depth > 1)."),
  xlora_dropout_p: field(
    number({ min: 0, below: 1 }),
    0.2,
    "Dropout after the classifier's hidden layers (depth > 1).",
  ),
  use_trainable_adapters: field(bool, false, "Train the LoRA experts too (frozen otherwise)."),
  softmax_temperature: field(number({ above: 0 }), 1.0, "Softmax temperature (lower: sharper)."),
  top_k_lora: field(nullable(integer()), null, "Keep only the top k experts per token (null: all)."),
  scaling_pass_value: field(number(), 0.0, "Every expert's scaling in the scaling pass."),
  global_scaling_weight: field(number(), 1.0, "Factor on every expert's output."),
};

/** Defaults of every X-LoRA field (peft 0.15.2). */
export const XLORA_DEFAULTS = defaultsOf(XLORA_FIELDS);

/** peft's __post_init__: fallbacks and warnings; top_k_lora below 1 (a warning in peft, a failure later) is an error. */
function validate(c: XLoraConfig): void {
  if (c.hidden_size === null) {
    process.emitWarning(
      "No value was provided for `hidden_size`. This will be set to 4096 by default, please " +
        "ensure that this is correct.",
    );
    c.hidden_size = 4096;
  }
  if (c.adapters === null) {
    process.emitWarning(
      "No value was provided for for `adapters`. This will be set to empty, please ensure that this is correct.",
    );
    c.adapters = {};
  }
  if (c.enable_softmax_topk && c.top_k_lora === null)
    process.emitWarning("`enable_softmax_topk` enabled `top_k_lora` is not set");
  if (c.enable_softmax_topk && c.enable_softmax) {
    process.emitWarning(
      "`enable_softmax_topk` and `enable_softmax` are both enabled. This will result in worse performance.",
    );
  }
  if (c.top_k_lora !== null && c.top_k_lora < 1)
    throw new ConfigError(
      `top_k_lora must be at least 1, got ${c.top_k_lora}`,
      "set top_k_lora to a number of experts ≥ 1, or null for all",
    );
}

/** Build an X-LoRA config from fields over the defaults (`fromFile`: lenient with fields of other peft versions). */
export const makeXLoraConfig = configBuilder<XLoraConfig>(PeftType.XLORA, XLORA_FIELDS, validate);

/** An X-LoRA config from user fields (TypeScript users) — defaults filled in, validated. */
export function XLoraConfig(fields: Partial<XLoraConfig> = {}): XLoraConfig {
  return makeXLoraConfig(fields, false);
}
