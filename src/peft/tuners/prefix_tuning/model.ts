/**
 * PrefixEncoder: prefix tuning's per-layer keys/values (HF's PrefixEncoder). Without projection an Embedding of
 * [num_virtual_tokens, num_layers · 2 · token_dim] (P-tuning v2); with prefix_projection an Embedding of token_dim
 * followed by Linear-Tanh-Linear to that width. peft saves (and reloads) only the output.
 */
import { Linear, Sequential, Tanh } from "../../../nn/index.js";
import type { Tensor } from "../../../tensor/index.js";
import { PromptLearningEncoder } from "../prompt-learning.js";
import type { PrefixTuningConfig } from "./config.js";

/** Prefix tuning's encoder; its output feeds every layer as past keys/values. */
export class PrefixEncoder extends PromptLearningEncoder {
  transform: Sequential | null = null;

  /** @param config a prepared config (token_dim, num_layers, encoder_hidden_size filled in) */
  constructor(config: PrefixTuningConfig) {
    const dim = config.token_dim!,
      out = config.num_layers! * 2 * dim;
    const project = config.prefix_projection && !config.inference_mode;
    super(config.num_virtual_tokens!, dim, out, !project);
    if (!project) return;
    const hidden = config.encoder_hidden_size ?? dim;
    this.transform = this.registerModule(
      "transform",
      new Sequential(new Linear(dim, hidden), Tanh(), new Linear(hidden, out)),
    );
  }

  override get isPrefix(): boolean {
    return true;
  }

  protected networkNames(): readonly string[] {
    return ["transform"];
  }

  override loadEncoded(saved: Tensor): boolean {
    const dropped = super.loadEncoded(saved);
    this.transform = null;
    return dropped;
  }

  protected reparameterize(rows: Tensor): Tensor {
    return this.transform!.forward(rows);
  }
}
