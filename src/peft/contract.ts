/**
 * The adapter contract: everything PeftModel, the Trainer and the CLI may ask of a PEFT method. A method's
 * registry entry (registry.ts) creates an AdapterHost — the module registered as `base_model` around the
 * transformers model — and the host declares what it can do in `capabilities`. Upper layers ask the declared
 * capabilities; they never test a host's class or probe for methods.
 *
 * Two hosts implement it: the injected-layers host (tuners/tuner.ts: LoRA, AdaLoRA, IA3, LoHa, LoKr,
 * LLaMA-Adapter), which swaps target modules for adapter layers, and the virtual-tokens host
 * (tuners/prompt-learning.ts: prompt tuning, P-tuning, prefix tuning), which leaves the model untouched and
 * feeds it learned prompts or prefixes.
 */
import type { Module } from "../nn/index.js";
import type { Tensor } from "../tensor/index.js";
import type { TorchGenerator } from "../tensor/torch-generator.js";
import type { PreTrainedModel } from "../models/pretrained.js";
import type { ModelOutput, Seq2SeqInputs } from "../models/outputs.js";
import type { Generative } from "../models/generation/generate.js";
import type { PeftConfig } from "./config.js";

/** The name under which a PeftModel holds its host (peft's `base_model`, hence the saved `base_model.model.…` keys). */
export const HOST_NAME = "base_model";

/** A PEFT forward's inputs: the model's, plus the task of each row (peft's task_ids) and the adapter of each row. */
export type PeftInputs = Seq2SeqInputs & {
  /** Multitask prompt tuning and Poly: the task index of each batch row, [batch] int32 (other methods ignore it, as peft does). */
  taskIds?: Tensor;
  /** Mixed-adapter batches (peft's adapter_names): one LoRA adapter name per batch row, "__base__" for none. */
  adapterNames?: readonly string[];
};

/** Which of peft's task forwards (PeftModelForCausalLM.forward, …) a PeftModel runs. */
export type PeftTask =
  | "causal-lm"
  | "seq2seq-lm"
  | "sequence-classification"
  | "token-classification"
  | "question-answering"
  | "feature-extraction";

/** How add_weighted_adapter combines LoRA adapters (peft 0.15.2's combination types). */
export type CombinationType =
  | "linear"
  | "cat"
  | "svd"
  | "ties"
  | "ties_svd"
  | "dare_linear"
  | "dare_linear_svd"
  | "dare_ties"
  | "dare_ties_svd"
  | "magnitude_prune"
  | "magnitude_prune_svd";

/** Options of addWeightedAdapter (peft's keyword arguments; LoRA only). */
export interface WeightedAdapterOptions {
  /** "svd" by default, as in peft. With a single adapter peft always uses "linear". */
  combinationType?: CombinationType;
  /** Rank of an "svd" result (default: the largest rank among the adapters). */
  svdRank?: number | null;
  /** Quantile in [0, 1] at which an "svd" result's entries are clamped (default: no clamping). */
  svdClamp?: number | null;
  /** Fraction of values kept by pruning, in [0, 1]; required by ties, dare_* and magnitude_prune (and their _svd). */
  density?: number | null;
  /** How ties / dare_ties elect each value's sign: "total" (default, sum of values) or "frequency" (count of signs). */
  majoritySignMethod?: "total" | "frequency";
  /**
   * The state of torch's global generator when peft's add_weighted_adapter is called, e.g.
   * `new TorchGenerator().manualSeed(s)` for torch.manual_seed(s) just before it: DARE's masks are then peft's
   * exactly, and the generator is left where torch's would be (past the new adapter's initial factors and every
   * mask). Without it, DARE draws its masks from peft-ts' seeded generator (manualSeed), unlike torch's.
   */
  generator?: TorchGenerator;
}

/** Capability: adapters fold into the base weights and back out. */
export interface Merging {
  /** Fold adapters (the active ones by default) into the base weights. */
  merge(adapterNames?: string[]): void;
  /** Undo every merge. */
  unmerge(): void;
  /** Merge, then return the plain model with every adapter layer replaced by its base layer. */
  mergeAndUnload(adapterNames?: string[]): PreTrainedModel;
}

/** Capability: a new adapter from a weighted combination of existing ones (peft's add_weighted_adapter). */
export interface WeightedCombination {
  /** Add `adapterName` combining `adapters` with `weights`; returns its config. It is added inactive and frozen. */
  addWeightedAdapter(
    adapters: readonly string[],
    weights: readonly number[],
    adapterName: string,
    opts: WeightedAdapterOptions,
  ): PeftConfig;
}

/** Capability: work after every optimizer step, before the gradients are zeroed (AdaLoRA's rank allocation). */
export interface OptimizerStepHook {
  /** Called with the 0-based global step after optimizer.step() and before zeroGrad(). */
  afterOptimizerStep(globalStep: number): void;
}

/** What a host declares it can do; null means "not this method" (callers give the user an error naming the method). */
export interface AdapterCapabilities {
  readonly merge: Merging | null;
  readonly weightedCombination: WeightedCombination | null;
  readonly optimizerStepHook: OptimizerStepHook | null;
}

/** The files of one saved adapter besides adapter_config.json (the save hook's result). */
export interface SavedAdapter {
  /** adapter_model.safetensors, keyed as peft keys it (`base_model.model.<path>.lora_A.weight`, `prompt_embeddings`). */
  tensors: Map<string, Tensor>;
  /** Further safetensors files by file name (peft-ts's prompt_encoder.safetensors); empty for most methods. */
  sideFiles: Map<string, Map<string, Tensor>>;
}

/** An adapter folder's contents as the load hook reads them. */
export interface AdapterFiles {
  /** adapter_model.safetensors. */
  tensors: ReadonlyMap<string, Tensor>;
  /** A side file's tensors, or null when the folder has none (the caller frees them after the load). */
  sideFile(name: string): ReadonlyMap<string, Tensor> | null;
  /** The adapter file's path, for messages. */
  where: string;
}

/** The wrapper a method puts around a transformers model; PeftModel holds it as `base_model`. */
export interface AdapterHost extends Module {
  /** Which family the method belongs to (for messages and for the family-specific accessors of PeftModel). */
  readonly family: "injected-layers" | "virtual-tokens";
  /** The transformers model inside. */
  readonly model: PreTrainedModel;
  /** Each adapter's prepared config. */
  readonly peftConfig: Map<string, PeftConfig>;
  /** The adapters in use now. */
  readonly activeAdapters: string[];
  /** What this method can do beyond the basics. */
  readonly capabilities: AdapterCapabilities;
  /** Add an adapter (not made active unless it is the first); returns its prepared config. */
  injectAdapter(config: PeftConfig, adapterName: string): PeftConfig;
  /** Make adapters active. */
  setAdapter(names: string | string[]): void;
  /** Remove an adapter and its weights. */
  deleteAdapter(name: string): void;
  /** Switch every adapter off (true) or back on (false). */
  setAdaptersDisabled(disabled: boolean): void;
  /** The parameters of one adapter. */
  adapterParameters(adapterName: string): Tensor[];
  /** Run peft's forward for `task` with the active adapters. */
  forwardTask(task: PeftTask, inputs: PeftInputs): ModelOutput;
  /** The model as generate() drives it with the active adapters (`taskIds`: multitask prompt tuning's tasks per row). */
  generative(taskIds?: Tensor): Generative;
  /** Remove every adapter without merging; returns the plain model. */
  unload(): PreTrainedModel;
  /** Save hook: the tensors (and side files) to write for an adapter. */
  saveAdapter(adapterName: string): SavedAdapter;
  /** Load hook: copy a saved adapter's tensors into the already-configured adapter `adapterName`. */
  loadAdapter(adapterName: string, files: AdapterFiles): void;
}
