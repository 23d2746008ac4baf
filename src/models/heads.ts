/** Pieces shared by the models: input embedding, the decoder layer loop, causal-LM loss, sequence-classification pooling and loss. */
import type { Module, TensorLayer } from "../nn/index.js";
import type { PreTrainedModel } from "./pretrained.js";
import {
  type Tensor,
  add,
  crossEntropy,
  exp,
  indexSelect,
  log,
  mean,
  mul,
  narrow,
  relu,
  reshape,
  select,
  square,
  sub,
  abs,
  neg,
  tensor,
  toFloat,
} from "../tensor/index.js";
import type { PretrainedConfig } from "./config.js";
import type { BaseModelOutput, LayerKV, ModelInputs, ModelOutput, PastKeyValues } from "./outputs.js";

/** inputsEmbeds when given, else the embeddings of inputIds; exactly one must be present. */
export function embedOrUse(inputs: ModelInputs, table: TensorLayer): Tensor {
  if ((inputs.inputIds === undefined) === (inputs.inputsEmbeds === undefined)) {
    throw new Error("pass exactly one of inputIds and inputsEmbeds");
  }
  if (inputs.inputsEmbeds) return inputs.inputsEmbeds;
  const ids = inputs.inputIds!;
  if (ids.rank !== 2) throw new Error(`inputIds must be [batch, length], got rank ${ids.rank}`);
  return table.forward(ids);
}

/** The hidden states the LM head reads: the last `numLogitsToKeep` positions when the inputs ask for fewer than all. */
export function keptPositions(hidden: Tensor, inputs: ModelInputs): Tensor {
  const keep = inputs.numLogitsToKeep ?? 0,
    length = hidden.shape[1]!;
  if (keep === 0 || keep >= length) return hidden;
  if (inputs.labels) throw new Error("numLogitsToKeep cannot be combined with labels: the loss needs every position");
  return narrow(hidden, 1, length - keep, keep);
}

/** Number of cached/prefix positions before the current tokens. */
export function pastLength(past: PastKeyValues | undefined): number {
  return past && past.length > 0 ? past[0]!.key.shape[2]! : 0;
}

/**
 * HF's causal-LM loss: logits at position t predict labels at t + 1; -100 labels are ignored; mean over the rest.
 * The labels are shifted rather than the logits (the last position of each row gets the ignored label), which
 * counts the same terms while the [batch, length, vocab] logits are read in place: no copy of them, and no
 * scatter of their gradient.
 */
export function causalLmLoss(logits: Tensor, labels: Tensor): Tensor {
  const [b, t, v] = logits.shape as [number, number, number];
  if (labels.rank !== 2 || labels.shape[0] !== b || labels.shape[1] !== t) {
    throw new Error(`labels of shape [${labels.shape.join(", ")}] do not match logits [${b}, ${t}, …]`);
  }
  const given = labels.dataSync();
  const targets = new Int32Array(b * t).fill(-100);
  for (let r = 0; r < b; r++) for (let i = 0; i + 1 < t; i++) targets[r * t + i] = given[r * t + i + 1]!;
  return crossEntropy(reshape(logits, [b * t, v]), tensor(targets, [b * t]));
}

/** Mean cross-entropy of token-level logits [batch, length, classes] against labels [batch, length]. */
export function tokenLoss(logits: Tensor, labels: Tensor): Tensor {
  const c = logits.shape[logits.rank - 1]!;
  return crossEntropy(reshape(logits, [-1, c]), reshape(labels, [-1]));
}

/**
 * Pool per-token logits [batch, length, labels] at each row's last non-padding token (HF's rule for decoder-only
 * classifiers: the position before the first pad id, the last position when there is none or when
 * inputsEmbeds are given), and compute the loss for the config's problem type.
 */
export function sequenceClassification(
  tokenLogits: Tensor,
  inputs: ModelInputs,
  config: PretrainedConfig,
): Pick<ModelOutput, "logits" | "loss"> {
  const [b, t, n] = tokenLogits.shape as [number, number, number];
  const last = new Int32Array(b).fill(t - 1);
  if (inputs.inputIds) {
    const pad = config.pad_token_id;
    if ((pad === null || pad === undefined) && b > 1)
      throw new Error("Cannot handle batch sizes > 1 if no padding token is defined (set pad_token_id in the config)");
    if (pad !== null && pad !== undefined) {
      const ids = inputs.inputIds.dataSync();
      for (let r = 0; r < b; r++) {
        let first = 0;
        for (let j = 0; j < t; j++)
          if (ids[r * t + j] === pad) {
            first = j;
            break;
          }
        last[r] = (((first - 1) % t) + t) % t;
      }
    }
  }
  const rows = tensor(
    Int32Array.from(last, (p, r) => r * t + p),
    [b],
  );
  const logits = indexSelect(reshape(tokenLogits, [b * t, n]), 0, rows);
  return { logits, ...(inputs.labels ? { loss: classificationLoss(logits, inputs.labels, config) } : {}) };
}

/** HF's loss for classification heads: MSE for one label, cross-entropy for int labels, BCE-with-logits otherwise. */
export function classificationLoss(logits: Tensor, labels: Tensor, config: PretrainedConfig): Tensor {
  const n = logits.shape[logits.rank - 1]!;
  const problem =
    config.problem_type ??
    (n === 1 ? "regression" : labels.dtype === "int32" ? "single_label_classification" : "multi_label_classification");
  if (problem === "regression") return mean(square(sub(reshape(logits, [-1]), reshape(toFloat(labels), [-1]))));
  if (problem === "single_label_classification") return crossEntropy(reshape(logits, [-1, n]), reshape(labels, [-1]));
  // Stable BCE with logits: max(x, 0) − x·y + log(1 + e^(−|x|)).
  const y = toFloat(labels);
  return mean(add(sub(relu(logits), mul(logits, y)), log(add(exp(neg(abs(logits))), 1))));
}

/**
 * HF's extractive-QA head: span logits [batch, length, 2] → startLogits / endLogits [batch, length]; with
 * startPositions and endPositions ([batch]), loss = (CE(start) + CE(end)) / 2 where positions are clamped to
 * [0, length] and those equal to length (outside the input) are ignored.
 */
export function questionAnswering(
  spanLogits: Tensor,
  inputs: ModelInputs,
): Pick<ModelOutput, "logits" | "startLogits" | "endLogits" | "loss"> {
  const [b, t, n] = spanLogits.shape as [number, number, number];
  if (n !== 2) throw new Error(`question answering needs num_labels = 2 (start and end), got ${n}`);
  const startLogits = select(spanLogits, 2, 0),
    endLogits = select(spanLogits, 2, 1);
  const out = { logits: spanLogits, startLogits, endLogits };
  if (inputs.startPositions === undefined || inputs.endPositions === undefined) return out;
  const clamped = (p: Tensor) => {
    const v = p.dataSync();
    if (v.length !== b) throw new Error(`start/end positions must have one entry per row (${b}), got ${v.length}`);
    return tensor(
      Int32Array.from(v, (x) => Math.min(Math.max(x, 0), t)),
      [b],
      "int32",
    );
  };
  const opts = { ignoreIndex: t };
  const loss = mul(
    add(
      crossEntropy(startLogits, clamped(inputs.startPositions), opts),
      crossEntropy(endLogits, clamped(inputs.endPositions), opts),
    ),
    0.5,
  );
  return { ...out, loss };
}

/** One decoder layer as runDecoderStack calls it: hidden states and the layer's cache entry in, new ones out. */
export type DecoderStep = (
  hidden: Tensor,
  past: LayerKV | undefined,
  index: number,
) => { out: Tensor; present: LayerKV };

/**
 * Run a decoder's layers as HF's models do: hidden states recorded before every layer and after `finish` (the final
 * norm), each layer's keys/values returned when useCache. Each layer goes through the model's runLayer: in its own
 * memory scope without a tape, recomputed in backward under gradient checkpointing.
 */
export function runDecoderStack(
  model: PreTrainedModel,
  layers: readonly Module[],
  hidden: Tensor,
  inputs: ModelInputs,
  step: DecoderStep,
  finish: (h: Tensor) => Tensor,
): BaseModelOutput {
  const hiddenStates: Tensor[] = [];
  const presents: PastKeyValues = [];
  layers.forEach((layer, i) => {
    if (inputs.outputHiddenStates) hiddenStates.push(hidden);
    const { out, present } = model.runLayer(
      layer,
      hidden,
      (h) => step(h, inputs.pastKeyValues?.[i], i),
      inputs.useCache === true,
    );
    hidden = out;
    if (present) presents.push(present);
  });
  hidden = finish(hidden);
  if (inputs.outputHiddenStates) hiddenStates.push(hidden);
  return {
    lastHiddenState: hidden,
    ...(inputs.useCache ? { pastKeyValues: presents } : {}),
    ...(inputs.outputHiddenStates ? { hiddenStates } : {}),
  };
}
