/**
 * Tiny random GPT-2 (Conv1D, tied embeddings) and LLaMA (GQA) models for behaviour tests, fixed batches of token ids,
 * logits as plain arrays, a training loop; a tiny LoRA GPT-2 and a learnable dataset for the Trainer tests.
 */
import { AutoModelForCausalLM } from "../src/models/auto.js";
import type { PreTrainedModel } from "../src/models/pretrained.js";
import type { ModelOutput } from "../src/models/outputs.js";
import type { Module } from "../src/nn/index.js";
import { LoraConfig, getPeftModel, TaskType, type PeftModel } from "../src/peft/index.js";
import { Dataset } from "../src/train/index.js";
import { AdamW, type Optimizer } from "../src/optim/index.js";
import * as T from "../src/tensor/index.js";
import { rng } from "./helpers.js";

/** Config of the tiny GPT-2: 2 layers, 4 heads, width 32, vocabulary 64, no dropout. */
export const GPT2 = {
  model_type: "gpt2",
  vocab_size: 64,
  n_positions: 32,
  n_embd: 32,
  n_layer: 2,
  n_head: 4,
  resid_pdrop: 0,
  embd_pdrop: 0,
  attn_pdrop: 0,
};
/** Config of the tiny LLaMA: 2 layers, 4 query heads and 2 key/value heads, width 32, vocabulary 64. */
export const LLAMA = {
  model_type: "llama",
  vocab_size: 64,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 32,
};

/** A tiny GPT-2 causal LM with weights drawn after manualSeed(seed), in eval mode; `extra` overrides config fields. */
export function gpt2(seed = 11, extra: Record<string, unknown> = {}): PreTrainedModel {
  T.manualSeed(seed);
  return AutoModelForCausalLM.fromConfig({ ...GPT2, ...extra }).eval();
}

/** A tiny LLaMA causal LM with weights drawn after manualSeed(seed), in eval mode; `extra` overrides config fields. */
export function llama(seed = 12, extra: Record<string, unknown> = {}): PreTrainedModel {
  T.manualSeed(seed);
  return AutoModelForCausalLM.fromConfig({ ...LLAMA, ...extra }).eval();
}

/** A fixed [2, 8] batch of token ids within both models' vocabulary. */
export const IDS = () => T.tensor(Int32Array.from([3, 17, 42, 5, 63, 0, 28, 9, 11, 2, 50, 33, 7, 61, 19, 40]), [2, 8]);

/** A model (PeftModel or plain) that takes named input tensors. */
export type Forwardable = Module & { forward(inputs: Record<string, T.Tensor>): unknown };

/** Logits of a model (PeftModel or plain) for `inputs` (IDS by default), as a plain array. */
export function logits(model: Forwardable, inputs?: () => Record<string, T.Tensor>): number[] {
  return T.tidy(() =>
    Array.from(
      T.noGrad(() => (model.forward(inputs ? inputs() : { inputIds: IDS() }) as ModelOutput).logits.dataSync()),
    ),
  );
}

/** A fixed toy dataset: 8 rows of 16 token ids below 64, drawn with rng(2024). */
export function toyIds(): T.Tensor {
  const r = rng(2024);
  return T.tensor(
    Int32Array.from({ length: 8 * 16 }, () => Math.floor(r() * 64)),
    [8, 16],
  );
}

/** `steps` language-modelling steps of `opt` on `ids` (labels = inputs); the losses. `afterStep` runs after each step's tidy scope. */
export function trainSteps(
  peft: PeftModel,
  opt: Optimizer,
  ids: T.Tensor,
  steps: number,
  afterStep?: () => void,
): number[] {
  const losses: number[] = [];
  for (let step = 0; step < steps; step++) {
    losses.push(
      T.tidy(() => {
        const loss = peft.forward({ inputIds: ids, labels: ids }).loss!;
        loss.backward();
        opt.step();
        opt.zeroGrad();
        return loss.item();
      }),
    );
    afterStep?.();
  }
  return losses;
}

/** `steps` of trainSteps with AdamW over the model's trainable parameters (on toyIds() by default); the losses. */
export function trainToy(peft: PeftModel, steps: number, lr = 0.05, ids: T.Tensor = toyIds()): number[] {
  return trainSteps(
    peft,
    new AdamW(
      peft.parameters().filter((p) => p.requiresGrad),
      { lr },
    ),
    ids,
    steps,
  );
}

/** Config of the Trainer tests' GPT-2: vocabulary 48, initializer_range 0.3 (so that a few steps visibly lower the loss). */
export const TRAINER_GPT2 = { ...GPT2, vocab_size: 48, initializer_range: 0.3 };

/** A tiny GPT-2 (TRAINER_GPT2 with `extra`) with LoRA (r 4, gaussian init, all linear layers) whose weights depend only on `seed`. */
export function tinyPeft(seed = 1, extra: Record<string, unknown> = {}): PeftModel {
  T.manualSeed(seed);
  const base = AutoModelForCausalLM.fromConfig({ ...TRAINER_GPT2, ...extra });
  const lora = LoraConfig({
    task_type: TaskType.CAUSAL_LM,
    r: 4,
    lora_alpha: 8,
    init_lora_weights: "gaussian",
    target_modules: "all-linear",
    fan_in_fan_out: true,
  });
  return getPeftModel(base, lora);
}

/** `n` sequences with a learnable pattern: token t+1 = (token t · 3 + 1) mod 40 from a random start drawn with rng(seed). */
export function patternDataset(n: number, len = 12, seed = 5): Dataset {
  const r = rng(seed);
  return new Dataset(
    Array.from({ length: n }, () => {
      const ids = [Math.floor(r() * 40)];
      while (ids.length < len) ids.push((ids[ids.length - 1]! * 3 + 1) % 40);
      return { input_ids: ids, labels: ids };
    }),
  );
}
