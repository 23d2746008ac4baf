/**
 * The model a server holds: a causal LM and, once an adapter is loaded, the PeftModel wrapping it. Adapters load and
 * unload at run time; forwards take one adapter per row (EngineModel).
 */
import { asGenerative, type GenerativeModel } from "../generation/index.js";
import type { ModelInputs, ModelOutput } from "../models/outputs.js";
import type { PretrainedConfig } from "../models/config.js";
import { BASE_ROW, PeftModel } from "../peft/index.js";
import type { PreTrainedModel } from "../models/pretrained.js";
import type { EngineModel } from "./engine.js";

/** A base model with LoRA adapters that come and go. */
export class ServedModel implements EngineModel {
  private readonly base: GenerativeModel;
  private peft: PeftModel | null = null;

  /** A plain model, or a PeftModel whose LoRA adapters are served as they are. */
  constructor(model: PreTrainedModel | PeftModel) {
    if (model instanceof PeftModel) this.peft = model.eval() as PeftModel;
    this.base = asGenerative(model instanceof PeftModel ? model.getBaseModel() : model);
    this.base.eval();
  }

  get config(): PretrainedConfig {
    return this.base.config;
  }

  /** Names of the loaded adapters. */
  adapters(): string[] {
    return this.peft ? Object.keys(this.peft.peftConfig) : [];
  }

  /** Load an adapter folder (peft's format) under `name`. */
  loadAdapter(name: string, dir: string): void {
    if (this.peft) this.peft.loadAdapter(dir, name);
    else this.peft = PeftModel.fromPretrained(this.base, dir, { adapterName: name });
    this.peft.eval();
  }

  /** Remove an adapter and free its weights. */
  unloadAdapter(name: string): void {
    this.peft!.deleteAdapter(name);
  }

  /** One forward pass with one adapter per row. */
  forward(inputs: ModelInputs, rowAdapters: readonly string[]): ModelOutput {
    if (!this.peft) return this.base.forward(inputs);
    // With no adapter in the batch the LoRA layers are skipped altogether (the base model's own speed).
    if (rowAdapters.every((a) => a === BASE_ROW))
      return this.peft.withAdapterDisabled(() => this.peft!.forward(inputs));
    return this.peft.forward({ ...inputs, adapterNames: rowAdapters });
  }
}
