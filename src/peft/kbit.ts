/**
 * peft's prepare_model_for_kbit_training for quantised (4-bit/8-bit) models: freeze every base parameter, bring
 * half-precision ones (norms, embeddings, heads) to float32, and — when training with gradient checkpointing —
 * make the input embeddings' output require gradients (transformers' enable_input_require_grads) and turn
 * checkpointing on where the model offers it.
 */
import { QuantizedLinear, type Module } from "../nn/index.js";
import { parameter, toFloat, type Tensor } from "../tensor/index.js";
import type { PreTrainedModel } from "../models/pretrained.js";

/** Options of prepareModelForKbitTraining (peft's argument names in camelCase). */
export interface KbitTrainingOptions {
  /** Default true, as in peft. */
  useGradientCheckpointing?: boolean;
}

/** Whether any Linear of the model is quantised (transformers' is_loaded_in_4bit / is_loaded_in_8bit). */
export function isQuantizedModel(model: Module): boolean {
  return model.modules().some((m) => m instanceof QuantizedLinear);
}

/** transformers' enable_input_require_grads: the input embeddings' output requires gradients (a leaf for checkpointing). */
export function enableInputRequireGrads(model: PreTrainedModel): void {
  const emb = model.getInputEmbeddings();
  const lookup = emb.forward.bind(emb);
  emb.forward = (ids: Tensor) => {
    const out = lookup(ids);
    if (!out.requiresGrad) out.requiresGrad = true;
    return out;
  };
}

/** Prepare a quantised model for training adapters on it (peft's prepare_model_for_kbit_training); returns the model. */
export function prepareModelForKbitTraining<M extends PreTrainedModel>(model: M, opts: KbitTrainingOptions = {}): M {
  for (const m of model.modules()) {
    for (const name of m.ownParameterNames()) {
      const p = m.ownParameter(name);
      if (!p) continue;
      const f = p.dtype === "float32" ? p : parameter(toFloat(p));
      f.requiresGrad = false;
      if (f !== p) m.registerParameter(name, f);
    }
  }
  if (isQuantizedModel(model) && (opts.useGradientCheckpointing ?? true)) {
    enableInputRequireGrads(model);
    const withCheckpointing = model as M & { gradientCheckpointingEnable?: () => unknown };
    withCheckpointing.gradientCheckpointingEnable?.();
  }
  return model;
}
