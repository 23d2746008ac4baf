/** peft's replicate_layers entry point: find the decoder under the task model and let it rebuild its stack. */
import { PreTrainedModel } from "../models/pretrained.js";
import type { Module } from "../nn/index.js";

/**
 * Replicate ranges [start, end) of the model's layers with shared weights (LoraConfig.layer_replication), looking
 * through the `.model` attributes as peft does; each copy then gets its own adapter layers.
 */
export function replicateLayers(model: PreTrainedModel, ranges: readonly (readonly number[])[]): void {
  let inner: Module = model;
  for (let next = childNamedModel(inner); next; next = childNamedModel(inner)) inner = next;
  (inner instanceof PreTrainedModel ? inner : model).replicateLayers(ranges);
}

function childNamedModel(m: Module): Module | undefined {
  return m.namedChildren().find(([name]) => name === "model")?.[1];
}
