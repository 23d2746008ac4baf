/**
 * The method registry: one entry per PEFT type says how to parse its config and which host carries it. A new
 * method is a folder under tuners/ that calls registerMethod — nothing else changes. What a method can do beyond
 * the basics is declared by its host (contract.ts), not found out by the callers.
 */
import type { EmbeddingLayer } from "../nn/index.js";
import type { PreTrainedModel } from "../models/pretrained.js";
import type { PeftConfig } from "./config.js";
import type { AdapterHost } from "./contract.js";
import { ConfigError } from "../errors.js";
import { closest } from "../io/config-fields.js";
import type { PromptLearningEncoder } from "./tuners/prompt-learning.js";

/** What every method registers. */
interface MethodBase<C extends PeftConfig> {
  peftType: string;
  /** Substring of this method's parameter names ("lora_", …), used to pick saved tensors. */
  prefix: string;
  /**
   * A complete, checked config from fields: from a file (`fromFile`, adapter_config.json) fields of other peft
   * versions are kept with a warning; from code or a CLI config, unknown fields are errors.
   */
  configFromJson(fields: Record<string, unknown>, fromFile: boolean): C;
  /** Wrap a model for its first adapter of this method. */
  createHost(model: PreTrainedModel, config: C, adapterName: string): AdapterHost;
}

/** A method that changes the model's layers (LoRA, IA3, LLaMA-Adapter, …): its host injects adapter layers. */
export interface InjectedLayersMethod<C extends PeftConfig = PeftConfig> extends MethodBase<C> {
  family: "injected-layers";
  /** Names in the saved state dict → names in the model (beyond the generic adapter-name insertion), or the reverse. */
  renameOnSave?(key: string, adapterName: string): string;
  renameOnLoad?(key: string, adapterName: string): string;
}

/** What a prompt-learning method's encoder gets to build itself from. */
export interface PromptEncoderContext {
  model: PreTrainedModel;
  /** The model's token embedding table (prompt tuning copies rows of it). */
  wordEmbeddings: EmbeddingLayer;
}

/**
 * A virtual-tokens method (prompt tuning, P-tuning, prefix tuning): the model is left untouched and a prompt
 * encoder produces virtual-token embeddings (or per-layer prefixes) that the host feeds in. The config it gets
 * has token_dim, num_layers, … already filled from the model's config.
 */
export interface VirtualTokensMethod<C extends PeftConfig = PeftConfig> extends MethodBase<C> {
  family: "virtual-tokens";
  createPromptEncoder(config: C, context: PromptEncoderContext): PromptLearningEncoder;
}

/** What a method registers: an injected-layers method or a virtual-tokens method. */
export type PeftMethod<C extends PeftConfig = PeftConfig> = InjectedLayersMethod<C> | VirtualTokensMethod<C>;

/** A createHost for a host class: wrap the model in a new host and add the first adapter to it. */
export function hostFactory<C extends PeftConfig>(
  Host: new (model: PreTrainedModel) => AdapterHost,
): MethodBase<C>["createHost"] {
  return (model, config, adapterName) => {
    const host = new Host(model);
    host.injectAdapter(config, adapterName);
    return host;
  };
}

const METHODS = new Map<string, PeftMethod>();

/** Register a PEFT method under its peft_type. */
export function registerMethod<C extends PeftConfig>(method: PeftMethod<C>): void {
  METHODS.set(method.peftType, method as unknown as PeftMethod);
}

/** The method of a peft_type, or an error listing the supported ones. */
export function methodFor(peftType: string): PeftMethod {
  const m = METHODS.get(peftType);
  if (!m) {
    const guess = closest(peftType, [...METHODS.keys()]);
    const suggestion = guess ? ` (did you mean "${guess}"?)` : "";
    throw new ConfigError(
      `peft_type "${peftType}" is not supported${suggestion}; supported: ${[...METHODS.keys()].join(", ")}`,
    );
  }
  return m;
}

/**
 * A config object from adapter_config.json contents (`fromFile`, the default: fields of other peft versions are
 * warned about), or from fields a user wrote (a CLI config: unknown fields are errors).
 */
export function configFromJson(fields: Record<string, unknown>, fromFile = true): PeftConfig {
  const type = fields["peft_type"];
  if (typeof type !== "string")
    throw new ConfigError('adapter_config.json has no "peft_type" field; is this a PEFT adapter folder?');
  return methodFor(type).configFromJson(fields, fromFile);
}
