/**
 * AdaptionPromptModel: LLaMA-Adapter (HF's AdaptionPromptModel). The top `adapter_layers` attention modules (those
 * whose path ends with target_modules, "self_attn") are wrapped in AdaptedAttention; everything else is frozen.
 * Unlike peft, which swaps whole wrapped modules per adapter, each wrapper holds every adapter's prompt and gate
 * (saved keys are the same: `…layers.<i>.self_attn.adaption_prompt`, `…adaption_gate`).
 */
import type { Module } from "../../../nn/index.js";
import type { LlamaConfig } from "../../../models/llama/config.js";
import type { AdapterCapabilities } from "../../contract.js";
import { BaseTuner } from "../tuner.js";
import { validateAdaptionPromptFields, type AdaptionPromptConfig } from "./config.js";
import { AdaptedAttention } from "./layer.js";

/** Model types whose attention AdaptedAttention knows (peft supports llama and mistral; qwen2 has the same layout). */
const SUPPORTED = ["llama", "mistral", "qwen2"];

/** LLaMA-Adapter injected into a LLaMA-family model. */
export class AdaptionPromptModel extends BaseTuner<AdaptionPromptConfig> {
  readonly prefix = "adaption_";
  /** Adaption prompts add attention over learned tokens: there is no weight change to merge. */
  override readonly capabilities: AdapterCapabilities = {
    merge: null,
    weightedCombination: null,
    optimizerStepHook: null,
  };

  protected prepareConfig(config: AdaptionPromptConfig): AdaptionPromptConfig {
    const type = this.model.config.model_type;
    if (!SUPPORTED.includes(type))
      throw new Error(`Unsupported model type for adaption prompt: '${type}' (supported: ${SUPPORTED.join(", ")})`);
    return { ...config, target_modules: config.target_modules ?? "self_attn" };
  }

  protected createOrUpdate(config: AdaptionPromptConfig, adapterName: string, target: Module, key: string): void {
    if (target instanceof AdaptedAttention) {
      target.updateLayer(adapterName, config.adapter_len!);
      return;
    }
    const c = this.model.config as LlamaConfig;
    const headDim = c.head_dim ?? c.hidden_size / c.num_attention_heads;
    const wrapped = new AdaptedAttention(target, {
      hidden: c.hidden_size,
      heads: c.num_attention_heads,
      kvHeads: c.num_key_value_heads ?? c.num_attention_heads,
      headDim,
    });
    wrapped.updateLayer(adapterName, config.adapter_len!);
    wrapped.train(target.training);
    this.model.setSubmodule(key, wrapped);
  }

  /** Wrap the top adapter_layers attentions (or add this adapter to the existing wrappers); freeze the rest. */
  override injectAdapter(config: AdaptionPromptConfig, adapterName: string): AdaptionPromptConfig {
    if (this.peftConfig.has(adapterName))
      throw new Error(`an adapter named "${adapterName}" already exists; pick another name or delete it first`);
    validateAdaptionPromptFields(config, true);
    const prepared = this.prepareConfig(config);
    const target = prepared.target_modules!;
    const candidates = this.model.namedModules().filter(([key]) => key === target || key.endsWith(`.${target}`));
    if (candidates.length < prepared.adapter_layers!) {
      throw new Error(
        `Config specifies more adapter layers '${prepared.adapter_layers}' than the model has ` +
          `'${candidates.length}' (modules named "${target}").`,
      );
    }
    for (const [key, module] of candidates.slice(-prepared.adapter_layers!))
      this.createOrUpdate(prepared, adapterName, module, key);
    if (this.activeAdapters.length === 0) this.activeAdapters = [adapterName];
    this.peftConfig.set(adapterName, prepared);
    for (const [name, p] of this.model.namedParameters())
      if (!name.split(".").some((part) => part.startsWith(this.prefix))) p.requiresGrad = false;
    this.setAdapter(this.activeAdapters);
    if (prepared.inference_mode) for (const p of this.adapterParameters(adapterName)) p.requiresGrad = false;
    return prepared;
  }
}
