/**
 * LoRA's trainable_token_indices (peft 0.15.2's TrainableTokensWrapper): the targeted embedding is wrapped with a
 * trainable-tokens layer under "token_adapter", and an LM head tied to it is wrapped with a layer sharing the same
 * rows, so that saved keys read "<embedding>.token_adapter.trainable_tokens_delta" as in peft.
 */
import { ConfigError } from "../errors.js";
import { Embedding, Linear, Module } from "../nn/index.js";
import type { PreTrainedModel } from "../models/pretrained.js";
import type { Tensor } from "../tensor/index.js";
import { TrainableTokensLayer } from "./tuners/trainable_tokens/layer.js";

/** An embedding (or tied head) whose listed rows are trained by the adapter in `token_adapter`. */
export class TrainableTokensWrapper extends Module {
  token_adapter: TrainableTokensLayer;

  constructor(target: Embedding | Linear, tiedTo: TrainableTokensLayer | null) {
    super();
    this.token_adapter = this.registerModule("token_adapter", new TrainableTokensLayer(target, tiedTo));
  }

  /** The wrapped layer's own table (the trained rows live in the adapter). */
  get weight(): Tensor {
    return this.token_adapter.weight;
  }

  /** The wrapped layer's output with the active adapters' rows. */
  forward(x: Tensor): Tensor {
    return this.token_adapter.forward(x);
  }
}

/**
 * Wrap (or add adapter `adapterName` to) the embeddings named by trainable_token_indices — a list for the input
 * embeddings, or module name → list — and a tied LM head; refuses modules also in modules_to_save, as peft does.
 */
export function wrapTrainableTokens(
  model: PreTrainedModel,
  adapterName: string,
  spec: number[] | Record<string, number[]>,
  modulesToSave: readonly string[] | null,
): void {
  const inputPath = () => model.namedModules().find(([, m]) => m === model.getInputEmbeddings())?.[0] ?? "embed_tokens";
  const targets = Array.isArray(spec) ? { [inputPath()]: spec } : spec;
  for (const [name, indices] of Object.entries(targets)) {
    if (modulesToSave?.includes(name)) {
      throw new ConfigError(
        `The embedding layer is already marked to be trained fully, either specify ` +
          `\`modules_to_save=[..., "${name}", ...]\` or \`trainable_tokens={'${name}': x}\` but not ` +
          `both.`,
      );
    }
    const found = model
      .namedModules()
      .filter(
        ([key, m]) =>
          key.endsWith(name) &&
          !key.includes("token_adapter") &&
          (m instanceof TrainableTokensWrapper || m instanceof Embedding),
      );
    if (found.length === 0)
      throw new ConfigError(
        `trainable_token_indices: Target modules {'${name}'} not found in the base model. Please ` +
          `check the target modules and try again.`,
        "name an Embedding layer of the model",
      );
    for (const [key, m] of found) {
      const wrapper = m instanceof TrainableTokensWrapper ? m : new TrainableTokensWrapper(m as Embedding, null);
      wrapper.token_adapter.updateLayer(adapterName, indices, true);
      if (wrapper !== m) model.setSubmodule(key, wrapper);
    }
  }
  tieHead(model, adapterName);
}

/** A head tied to a wrapped input embedding gets a wrapper sharing its rows (peft's tied-weights step). */
function tieHead(model: PreTrainedModel, adapterName: string): void {
  const input = model.getInputEmbeddings() as unknown;
  const head = model.getOutputEmbeddings();
  if (!(input instanceof TrainableTokensWrapper) || !head || !model.config["tie_word_embeddings"]) return;
  if (head instanceof TrainableTokensWrapper) return head.token_adapter.updateLayer(adapterName, [], true);
  const headPath = model.namedModules().find(([, m]) => m === head)?.[0];
  if (!headPath || !(head instanceof Linear) || head.weight !== input.weight) return;
  const tied = new TrainableTokensWrapper(head, input.token_adapter);
  tied.token_adapter.updateLayer(adapterName, [], true);
  model.setSubmodule(headPath, tied);
}

/** The saved tensors of adapter `adapterName`'s trainable tokens (tied copies are not saved, as in peft). */
export function trainableTokensState(root: Module, adapterName: string, keyPrefix: string): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [path, m] of root.namedModules()) {
    if (!(m instanceof TrainableTokensWrapper) || m.token_adapter.tiedTo) continue;
    const delta = m.token_adapter.trainable_tokens_delta.ownParameter(adapterName);
    if (delta) out.set(`${keyPrefix}${path}.token_adapter.trainable_tokens_delta`, delta);
  }
  return out;
}
