/**
 * TrainableTokensModel (peft 0.15.2): trainable rows on the target embedding(s) — by default the model's input
 * embeddings — and, when the LM head is tied to them, on the head too (sharing the same delta, as peft does).
 */
import { Embedding, Linear, type Module } from "../../../nn/index.js";
import { BaseTuner } from "../tuner.js";
import { makeTrainableTokensConfig, type TrainableTokensConfig } from "./config.js";
import { TrainableTokensLayer } from "./layer.js";

/** Trainable tokens injected into a model. */
export class TrainableTokensModel extends BaseTuner<TrainableTokensConfig> {
  readonly prefix = "trainable_tokens_";

  /** Add an adapter, then (peft's inject_adapter) give a tied LM head the same trained rows. */
  override injectAdapter(fields: TrainableTokensConfig, adapterName: string): TrainableTokensConfig {
    const config = super.injectAdapter(makeTrainableTokensConfig(fields, false), adapterName);
    const input = this.model.getInputEmbeddings();
    const head = this.model.getOutputEmbeddings();
    if (!(input instanceof TrainableTokensLayer) || !head || !this.model.config["tie_word_embeddings"]) return config;
    const headPath = this.model.namedModules().find(([, m]) => m === head)?.[0];
    if (head instanceof TrainableTokensLayer) head.updateLayer(adapterName, [], config.init_weights);
    else if (headPath && head instanceof Linear && head.weight === input.weight) {
      const tied = new TrainableTokensLayer(head, input);
      tied.activeAdapters = [...this.activeAdapters];
      tied.updateLayer(adapterName, [], config.init_weights);
      this.model.setSubmodule(headPath, tied);
    }
    this.setAdapter(this.activeAdapters);
    return config;
  }

  /** peft's _prepare_adapter_config: the input embeddings by default. */
  protected prepareConfig(config: TrainableTokensConfig): TrainableTokensConfig {
    if (config.target_modules !== null) return { ...config };
    const input = this.model.getInputEmbeddings();
    const path = this.model.namedModules().find(([, m]) => m === input)?.[0];
    return { ...config, target_modules: path ?? "embed_tokens" };
  }

  /** Only embeddings (or trainable-tokens layers, which get another adapter) are adapted. */
  protected override checkTargetModule(key: string, target: Module): void {
    if (target instanceof TrainableTokensLayer || target instanceof Embedding) return;
    throw new Error(
      `Target module ${key} (${target.constructor.name}) is not supported by trainable tokens: ` +
        `target an embedding layer (e.g. embed_tokens)`,
    );
  }

  protected createOrUpdate(config: TrainableTokensConfig, adapterName: string, target: Module, key: string): void {
    if (target instanceof TrainableTokensLayer) {
      target.updateLayer(adapterName, config.token_indices, config.init_weights);
      return;
    }
    const layer = new TrainableTokensLayer(target as Embedding);
    layer.activeAdapters = [...this.activeAdapters];
    layer.updateLayer(adapterName, config.token_indices, config.init_weights);
    this.model.setSubmodule(key, layer);
  }
}
