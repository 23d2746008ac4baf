/**
 * The machinery shared by the prompt-learning methods (prompt tuning, P-tuning, prefix tuning), after HF peft's
 * PeftModel: the model itself is not changed; a prompt encoder per adapter produces either virtual-token
 * embeddings that are prepended to the input embeddings, or (prefix tuning) past keys/values for every layer.
 *
 * - PromptLearningConfig: num_virtual_tokens, token_dim, num_layers, num_attention_heads,
 *   num_transformer_submodules, filled from the model's config as peft's _prepare_prompt_learning_config does
 *   (prefix tuning on grouped-query attention uses the key/value heads and width).
 * - PromptLearningEncoder: the base of the encoders. Its output for all virtual tokens is what gets saved as
 *   `prompt_embeddings`; a loaded adapter (and one created in inference mode) holds that output directly, so
 *   inference needs no MLP/LSTM.
 * - PromptLearningModel: the virtual-tokens host (contract.ts) that holds the encoders (`prompt_encoder.<adapter>`) around the frozen
 *   model, and the task-specific forwards and the generation adapter of peft's PeftModelFor* classes.
 */
import { Embedding, Module, ModuleDict } from "../../nn/index.js";
import type { PreTrainedModel } from "../../models/pretrained.js";
import type { PretrainedConfig } from "../../models/config.js";
import type { LayerKV, ModelOutput, PastKeyValues, Seq2SeqInputs } from "../../models/outputs.js";
import { tokenLoss } from "../../models/heads.js";
import { asGenerative, type Generative } from "../../models/generation/index.js";
import {
  type Tensor,
  cat,
  contiguous,
  expand,
  full,
  narrow,
  noGrad,
  ones,
  permute,
  reshape,
  select,
  unsqueeze,
  zeros,
  fmtShape,
  sameShape,
} from "../../tensor/index.js";
import { check, PeftType, TaskType, type PeftConfig } from "../config.js";
import type {
  AdapterCapabilities,
  AdapterFiles,
  AdapterHost,
  PeftInputs,
  PeftTask,
  SavedAdapter,
} from "../contract.js";
import { methodFor } from "../registry.js";
import { field, integer, nullable, oneOf, type ForeignField } from "../../io/config-fields.js";

/** The fields every prompt-learning config has (peft's PromptLearningConfig). */
export interface PromptLearningConfig extends PeftConfig {
  num_virtual_tokens: number | null;
  /** Hidden size of the model (prefix tuning on GQA models: the key/value width). Filled from the model. */
  token_dim: number | null;
  /** 2 for encoder-decoder models (SEQ_2_SEQ_LM), else 1. Filled from the task type. */
  num_transformer_submodules: number | null;
  /** Attention heads (prefix tuning on GQA models: key/value heads). Filled from the model. */
  num_attention_heads: number | null;
  /** Transformer layers. Filled from the model. */
  num_layers: number | null;
}

const positive = integer({ min: 1 });

/** The fields every prompt-learning method shares (peft 0.15.2): type and range, default, and what each does. */
export const PROMPT_LEARNING_FIELDS = {
  num_virtual_tokens: field<number | null>(
    nullable(positive),
    null,
    "The number of virtual tokens (required before the config is used).",
  ),
  token_dim: field<number | null>(
    nullable(positive),
    null,
    "The model's hidden size (prefix tuning on grouped-query attention: the key/value width); null: from the model.",
  ),
  num_transformer_submodules: field<number | null>(
    nullable(oneOf(1, 2)),
    null,
    "2 for encoder-decoder models (SEQ_2_SEQ_LM), else 1; null: from the task type.",
  ),
  num_attention_heads: field<number | null>(
    nullable(positive),
    null,
    "The model's attention heads (prefix tuning on GQA models: key/value heads); null: from the model.",
  ),
  num_layers: field<number | null>(nullable(positive), null, "The model's transformer layers; null: from the model."),
} as const;

/** Fields of newer peft versions that the prompt-learning methods here do not implement. */
export const PROMPT_LEARNING_FOREIGN: Record<string, ForeignField> = {
  modules_to_save: { versions: "≥ 0.17", default: null },
};

function firstNumber(config: PretrainedConfig, keys: readonly string[]): number | null {
  for (const k of keys) if (typeof config[k] === "number") return config[k] as number;
  return null;
}

/** The check a config must pass before it is attached to a model: num_virtual_tokens is set. */
export function requireVirtualTokens(c: PromptLearningConfig): void {
  check(
    positive.accepts(c.num_virtual_tokens),
    `${c.peft_type}: num_virtual_tokens must be a positive integer (the number of virtual ` +
      `tokens), got ${String(c.num_virtual_tokens)}`,
  );
}

/**
 * peft's _prepare_prompt_learning_config: num_layers, token_dim and num_attention_heads from the model's config
 * when not given; for prefix tuning on models with num_key_value_heads, the prefix has the key/value heads and
 * width (token_dim / heads · kv heads); encoder_hidden_size (P-tuning, prefix tuning) defaults to token_dim;
 * num_transformer_submodules is 2 for SEQ_2_SEQ_LM, else 1.
 */
export function preparePromptLearningConfig<C extends PromptLearningConfig>(
  config: C,
  modelConfig: PretrainedConfig,
): C {
  const c: C = { ...config };
  const need = (value: number | null, field: string) => {
    if (value === null)
      throw new Error(
        `${c.peft_type}: cannot find ${field} in the model's config (model_type ` +
          `"${modelConfig.model_type}"); please specify \`${field}\` in the config`,
      );
    return value;
  };
  c.num_layers ??= need(firstNumber(modelConfig, ["num_hidden_layers", "num_layers", "n_layer"]), "num_layers");
  c.token_dim ??= need(firstNumber(modelConfig, ["hidden_size", "n_embd", "d_model"]), "token_dim");
  c.num_attention_heads ??= need(
    firstNumber(modelConfig, ["num_attention_heads", "n_head", "num_heads", "encoder_attention_heads"]),
    "num_attention_heads",
  );
  const kvHeads = modelConfig["num_key_value_heads"];
  if (c.peft_type === PeftType.PREFIX_TUNING && typeof kvHeads === "number") {
    c.token_dim = Math.floor(c.token_dim / c.num_attention_heads) * kvHeads;
    c.num_attention_heads = kvHeads;
  }
  if ("encoder_hidden_size" in c && (c["encoder_hidden_size"] === null || c["encoder_hidden_size"] === undefined)) {
    (c as Record<string, unknown>)["encoder_hidden_size"] = c.token_dim;
  }
  c.num_transformer_submodules ??= c.task_type === TaskType.SEQ_2_SEQ_LM ? 2 : 1;
  return c;
}

/**
 * The base of the prompt encoders. `embedding` has one row per virtual token; `encode()` is the encoder's output
 * for all of them ([rows, outputDim]), which is what peft saves as `prompt_embeddings`. A "direct" encoder (created
 * in inference mode, or after loading a saved adapter) holds that output in `embedding` and has no network.
 */
export abstract class PromptLearningEncoder extends Module {
  embedding: Embedding;
  /** Whether `embedding` holds the encoder output itself (no reparameterisation network). */
  direct: boolean;

  /**
   * @param rows number of virtual-token rows
   * @param inputDim width of the embedding when a network follows it
   * @param outputDim width of the encoder output (token_dim, or num_layers·2·token_dim for prefixes)
   */
  constructor(
    readonly rows: number,
    inputDim: number,
    readonly outputDim: number,
    direct: boolean,
  ) {
    super();
    this.direct = direct;
    this.embedding = this.registerModule("embedding", new Embedding(rows, direct ? outputDim : inputDim));
  }

  /** True when the output becomes every layer's past keys/values (prefix tuning) instead of input embeddings. */
  get isPrefix(): boolean {
    return false;
  }

  /** Names of the network's submodules (dropped when the encoder becomes direct). */
  protected abstract networkNames(): readonly string[];

  /** The network applied to the embedding rows [rows, inputDim] → [rows, outputDim]. */
  protected abstract reparameterize(rows: Tensor): Tensor;

  /** The encoder output for every virtual token, [rows, outputDim]. */
  encode(): Tensor {
    return this.direct ? this.embedding.weight : this.reparameterize(this.embedding.weight);
  }

  /** The prompts of a batch, [batch, rows, outputDim]: the same for every row (multitask prompts depend on `taskIds`). */
  encodeBatch(batch: number, _taskIds: Tensor | undefined): Tensor {
    const out = this.encode();
    return expand(unsqueeze(out, 0), [batch, out.shape[0]!, out.shape[1]!]);
  }

  /** Tensors saved beside `prompt_embeddings` (multitask prompt tuning's task factors), by their saved names. */
  extraSavedTensors(): Map<string, Tensor> {
    return new Map();
  }

  /**
   * Take a saved `prompt_embeddings` (the encoder's output): the network is dropped and the embedding holds the
   * saved rows, as peft does when it loads an adapter. Returns whether a network was dropped.
   */
  loadEncoded(saved: Tensor): boolean {
    if (!sameShape(saved.shape, [this.rows, this.outputDim])) {
      throw new Error(
        `prompt_embeddings has shape ${fmtShape(saved.shape)} but this adapter's encoder outputs ` +
          `${fmtShape([this.rows, this.outputDim])} (different base model or num_virtual_tokens?)`,
      );
    }
    const dropped = !this.direct;
    if (dropped) {
      const trainable = this.embedding.weight.requiresGrad;
      this.embedding.dispose();
      for (const name of this.networkNames()) {
        this.namedChildren()
          .find(([n]) => n === name)?.[1]
          ?.dispose();
        this.registerModule(name, null);
      }
      this.embedding = this.registerModule("embedding", new Embedding(this.rows, this.outputDim));
      this.embedding.weight.requiresGrad = trainable;
      this.direct = true;
    }
    noGrad(() => this.embedding.weight.copy_(contiguous(saved)));
    return dropped;
  }
}

/** The batch size of a forward's inputs. */
function batchOf(inputs: Seq2SeqInputs): number {
  const t =
    inputs.inputIds ??
    inputs.inputsEmbeds ??
    inputs.encoderOutputs ??
    inputs.decoderInputIds ??
    inputs.decoderInputsEmbeds;
  if (!t) throw new Error("prompt learning: pass inputIds or inputsEmbeds");
  return t.shape[0]!;
}

/** [ones(batch, n), mask] along the sequence axis (the virtual tokens are always attended to). */
function extendMask(mask: Tensor, n: number): Tensor {
  return cat([ones([mask.shape[0]!, n], mask.dtype), mask], 1);
}

/**
 * peft-ts's extra file in a prompt-learning adapter folder: the prompt encoder's own weights (embedding and
 * MLP/LSTM/projection), written when the encoder has a network. Loading for training restores the encoder from it;
 * without it (folders from Python peft) training continues on the saved output directly.
 */
export const PROMPT_ENCODER_FILE = "prompt_encoder.safetensors";

/**
 * The virtual-tokens host of the adapter contract: the adapters are prompt encoders; the transformers model inside
 * stays frozen and unchanged. Nothing merges or combines, and no per-step work is needed.
 */
export class PromptLearningModel extends Module implements AdapterHost {
  readonly family = "virtual-tokens";
  readonly capabilities: AdapterCapabilities = { merge: null, weightedCombination: null, optimizerStepHook: null };
  model: PreTrainedModel;
  readonly peftConfig = new Map<string, PromptLearningConfig>();
  activeAdapters: string[] = [];
  prompt_encoder: ModuleDict<PromptLearningEncoder>;
  /** withAdapterDisabled: the plain model runs. */
  disabled = false;
  private warnedPositionIds = false;
  private warnedTokenTypeIds = false;

  constructor(model: PreTrainedModel) {
    super();
    this.model = this.registerModule("model", model);
    this.prompt_encoder = this.registerModule("prompt_encoder", new ModuleDict<PromptLearningEncoder>());
  }

  /** Add a prompt encoder for an adapter; the model's own parameters are frozen. */
  injectAdapter(config: PromptLearningConfig, adapterName: string): PromptLearningConfig {
    if (this.peftConfig.has(adapterName))
      throw new Error(`an adapter named "${adapterName}" already exists; pick another name or delete it first`);
    requireVirtualTokens(config);
    const prepared = preparePromptLearningConfig(config, this.model.config);
    const method = methodFor(prepared.peft_type);
    if (method.family !== "virtual-tokens") throw new Error(`${prepared.peft_type} is not a prompt-learning method`);
    this.checkFitsModel(prepared);
    this.model.requiresGrad_(false);
    const encoder = method.createPromptEncoder(prepared, {
      model: this.model,
      wordEmbeddings: this.model.getInputEmbeddings(),
    });
    encoder.train(this.training);
    if (prepared.inference_mode) encoder.requiresGrad_(false);
    this.prompt_encoder.set(adapterName, encoder);
    this.peftConfig.set(adapterName, prepared);
    if (this.activeAdapters.length === 0) this.activeAdapters = [adapterName];
    return prepared;
  }

  /**
   * A config read from an adapter folder carries token_dim and num_layers of the model it was made for; refuse one
   * that does not fit this model (the prompts or prefixes would not line up with its embeddings or layers).
   */
  private checkFitsModel(config: PromptLearningConfig): void {
    const own = preparePromptLearningConfig(
      { ...config, token_dim: null, num_layers: null, num_attention_heads: null },
      this.model.config,
    );
    const prefix = config.peft_type === PeftType.PREFIX_TUNING;
    const fields = prefix ? (["token_dim", "num_layers", "num_attention_heads"] as const) : (["token_dim"] as const);
    for (const field of fields) {
      if (config[field] !== own[field]) {
        throw new Error(
          `${config.peft_type}: ${field} ${config[field]} does not fit this model (the model's ` +
            `${own[field]}${prefix && field !== "num_layers" ? ", counting key/value heads" : ""}); ` +
            `was the adapter made for another base model?`,
        );
      }
    }
  }

  /** Make one adapter the active one (prompt learning runs one prompt at a time). */
  setAdapter(names: string | string[]): void {
    const list = typeof names === "string" ? [names] : names;
    if (list.length !== 1)
      throw new Error(`prompt learning uses one adapter at a time; got ${list.length} (${list.join(", ")})`);
    if (!this.peftConfig.has(list[0]!))
      throw new Error(`adapter "${list[0]}" not found; adapters: ${[...this.peftConfig.keys()].join(", ")}`);
    this.activeAdapters = [list[0]!];
  }

  /** Remove an adapter's encoder; the last remaining adapter becomes active if the active one was removed. */
  deleteAdapter(name: string): void {
    if (!this.peftConfig.has(name)) throw new Error(`adapter "${name}" does not exist`);
    this.peftConfig.delete(name);
    this.prompt_encoder.get(name).dispose();
    this.prompt_encoder.remove(name);
    this.activeAdapters = this.activeAdapters.filter((a) => a !== name);
    const remaining = [...this.peftConfig.keys()];
    if (this.activeAdapters.length === 0 && remaining.length > 0)
      this.activeAdapters = [remaining[remaining.length - 1]!];
  }

  /** The parameters of an adapter's encoder. */
  adapterParameters(adapterName: string): Tensor[] {
    return this.prompt_encoder.has(adapterName) ? this.prompt_encoder.get(adapterName).parameters() : [];
  }

  /** Disabled: the plain model runs (and generates) without prompts. */
  setAdaptersDisabled(disabled: boolean): void {
    this.disabled = disabled;
  }

  /** The untouched model (prompt learning changes nothing inside it). */
  unload(): PreTrainedModel {
    return this.model;
  }

  /** peft's task forward with the active prompt, or the plain model's forward when disabled. */
  forwardTask(task: PeftTask, given: PeftInputs): ModelOutput {
    const { taskIds, ...inputs } = given;
    return this.disabled ? (this.model.forward(inputs) as ModelOutput) : this.forwardWithPrompts(task, inputs, taskIds);
  }

  /** Save hook: `prompt_embeddings` (the encoder's output) and, for encoders with a network, its weights beside it. */
  saveAdapter(adapterName: string): SavedAdapter {
    const encoder = this.encoderTensors(adapterName);
    return {
      tensors: this.savedTensors(adapterName),
      sideFiles: new Map(encoder ? [[PROMPT_ENCODER_FILE, encoder]] : []),
    };
  }

  /** Load hook: see loadSaved. */
  loadAdapter(adapterName: string, files: AdapterFiles): void {
    noGrad(() => this.loadSaved(files.tensors, adapterName, files.where, files.sideFile(PROMPT_ENCODER_FILE)));
  }

  /** The active adapter's config. */
  get activeConfig(): PromptLearningConfig {
    const name = this.activeAdapters[0];
    if (name === undefined) throw new Error("no active prompt-learning adapter");
    return this.peftConfig.get(name)!;
  }

  /** The active adapter's encoder. */
  get activeEncoder(): PromptLearningEncoder {
    return this.prompt_encoder.get(this.activeAdapters[0]!);
  }

  private get numVirtualTokens(): number {
    return this.activeConfig.num_virtual_tokens!;
  }

  /** The tensors saved for an adapter: `prompt_embeddings`, the encoder's output. */
  private savedTensors(adapterName: string): Map<string, Tensor> {
    if (!this.prompt_encoder.has(adapterName)) throw new Error(`adapter "${adapterName}" not found`);
    const encoder = this.prompt_encoder.get(adapterName);
    return new Map([["prompt_embeddings", noGrad(() => contiguous(encoder.encode()))], ...encoder.extraSavedTensors()]);
  }

  /** The encoder's own weights (embedding and network) when it has a network (P-tuning, projected prefixes), else null. */
  private encoderTensors(adapterName: string): Map<string, Tensor> | null {
    const encoder = this.prompt_encoder.get(adapterName);
    return encoder.direct ? null : encoder.stateDict();
  }

  /**
   * Load `prompt_embeddings` from a saved adapter into an adapter's encoder. An encoder with a network (an adapter
   * set up for training) takes the network's weights from `encoderWeights` (peft-ts's prompt_encoder.safetensors)
   * when given, in place, so that training resumes exactly; otherwise, as peft's inference path does, the encoder
   * becomes the saved output itself.
   */
  private loadSaved(
    weights: ReadonlyMap<string, Tensor>,
    adapterName: string,
    where: string,
    encoderWeights: ReadonlyMap<string, Tensor> | null = null,
  ): void {
    const extra = this.prompt_encoder.get(adapterName).extraSavedTensors();
    const unexpected = [...weights.keys()].filter((k) => k !== "prompt_embeddings" && !extra.has(k));
    if (unexpected.length > 0)
      throw new Error(
        `${where}: a prompt-learning adapter holds only "prompt_embeddings", but this file also ` +
          `has ${unexpected.slice(0, 3).join(", ")}`,
      );
    const saved = weights.get("prompt_embeddings");
    if (!saved)
      throw new Error(
        `${where}: "prompt_embeddings" is missing; is this a ${this.peftConfig.get(adapterName)?.peft_type} adapter?`,
      );
    const encoder = this.prompt_encoder.get(adapterName);
    if (!encoder.direct && encoderWeights) {
      const own = encoder.stateDict();
      const keys = (m: ReadonlyMap<string, Tensor>) => [...m.keys()].sort().join(", ");
      if (
        keys(own) !== keys(encoderWeights) ||
        [...own].some(([k, t]) => !sameShape(t.shape, encoderWeights.get(k)!.shape))
      ) {
        throw new Error(
          `${where}: the prompt encoder weights beside it (${keys(encoderWeights)}) do not fit this ` +
            `adapter's encoder (${keys(own)})`,
        );
      }
      for (const [k, t] of own) t.copy_(contiguous(encoderWeights.get(k)!));
      return;
    }
    let dropped: boolean;
    try {
      dropped = encoder.loadEncoded(saved);
    } catch (err) {
      throw new Error(`${where}: ${(err as Error).message}`);
    }
    for (const [k, own] of encoder.extraSavedTensors()) {
      const t = weights.get(k);
      if (!t || !sameShape(t.shape, own.shape))
        throw new Error(
          `${where}: "${k}" is ${t ? `of shape [${t.shape.join(", ")}]` : "missing"}; this adapter's ` +
            `is [${own.shape.join(", ")}]`,
        );
      own.copy_(contiguous(t));
    }
    if (dropped && !this.peftConfig.get(adapterName)!.inference_mode) {
      process.emitWarning(
        `${where}: the adapter stores the prompt encoder's output only (as peft saves it), so ` +
          `training continues on those embeddings directly; the encoder network is not restored`,
      );
    }
  }

  /** The virtual-token embeddings for a batch: [batch, rows, token_dim] (rows = num_virtual_tokens · submodules). */
  prompts(batch: number, taskIds?: Tensor): Tensor {
    return this.activeEncoder.encodeBatch(batch, taskIds);
  }

  /**
   * Prefix tuning's past keys/values, as peft's get_prompt builds them: the encoder output [P, num_layers·2·token_dim]
   * is viewed as [P, num_layers·2, heads, head_dim]; entry 2l is layer l's keys, 2l + 1 its values ([batch, heads, P,
   * head_dim] each). Encoder-decoder models (2 submodules) get four entries per layer — self-attention keys, values,
   * cross-attention keys, values — taken in order from the list repeated twice, exactly as peft does.
   */
  prefixPastKeyValues(batch: number): PastKeyValues {
    const c = this.activeConfig;
    const P = c.num_virtual_tokens!,
      L = c.num_layers!,
      H = c.num_attention_heads!,
      D = c.token_dim!;
    if (D % H !== 0) throw new Error(`prefix tuning: token_dim ${D} is not divisible by num_attention_heads ${H}`);
    const out = this.activeEncoder.encode();
    const view = reshape(out, [P, 2 * L, H, D / H]);
    const entries = Array.from({ length: 2 * L }, (_, j) =>
      expand(unsqueeze(permute(select(view, 1, j), [1, 0, 2]), 0), [batch, H, P, D / H]),
    );
    const all = c.num_transformer_submodules === 2 ? [...entries, ...entries] : entries;
    const per = 2 * (c.num_transformer_submodules ?? 1);
    const layers: PastKeyValues = [];
    for (let i = 0; i + per <= all.length; i += per) {
      const layer: LayerKV = { key: all[i]!, value: all[i + 1]! };
      if (per === 4) {
        layer.crossKey = all[i + 2]!;
        layer.crossValue = all[i + 3]!;
      }
      layers.push(layer);
    }
    return layers;
  }

  private dropPositionIds(inputs: Seq2SeqInputs): void {
    if (inputs.positionIds === undefined) return;
    if (!this.warnedPositionIds)
      process.emitWarning("Position ids are not supported for parameter efficient tuning. Ignoring position ids.");
    this.warnedPositionIds = true;
    delete inputs.positionIds;
  }

  private dropTokenTypeIds(inputs: Seq2SeqInputs): void {
    if (inputs.tokenTypeIds === undefined) return;
    if (!this.warnedTokenTypeIds)
      process.emitWarning("Token type ids are not supported for parameter efficient tuning. Ignoring token type ids");
    this.warnedTokenTypeIds = true;
    delete inputs.tokenTypeIds;
  }

  /** inputsEmbeds (or the embeddings of inputIds) with the first num_virtual_tokens prompt rows in front. */
  private withPrompts(inputs: Seq2SeqInputs, batch: number, taskIds: Tensor | undefined): Tensor {
    const embeds = inputs.inputsEmbeds ?? this.model.getInputEmbeddings().forward(inputs.inputIds!);
    const prompts = narrow(this.prompts(batch, taskIds), 1, 0, this.numVirtualTokens);
    return cat([prompts, embeds], 1);
  }

  /**
   * peft's task forwards with the active prompt (PeftModelForCausalLM.forward, …ForSeq2SeqLM, …):
   * - the attention mask gets num_virtual_tokens leading ones (seq2seq: the encoder mask for prompt/P-tuning, the
   *   decoder mask for prefix tuning); position ids are dropped (the model counts positions itself);
   * - prefix tuning passes the prefixes as pastKeyValues; prompt/P-tuning prepend the prompts to the input
   *   embeddings. Causal LM: labels get num_virtual_tokens leading -100 and the outputs keep the virtual
   *   positions (as in peft). Token classification: the virtual positions are dropped from the logits and the
   *   loss is computed on the real tokens (peft would fail on the length mismatch). Question answering, as in
   *   peft 0.15: the start/end logits cover the virtual positions too ([batch, P + length]) and the loss is
   *   computed over them with the positions unchanged.
   *   Sequence classification: the head pools as usual (a decoder-only model given embeddings pools the last
   *   position). Token type ids get zeros for the virtual tokens (classification) or are dropped (LMs, QA).
   */
  private forwardWithPrompts(task: PeftTask, given: Seq2SeqInputs, taskIds: Tensor | undefined): ModelOutput {
    const inputs: Seq2SeqInputs = { ...given };
    const P = this.numVirtualTokens;
    const batch = batchOf(inputs);
    const prefix = this.activeEncoder.isPrefix;
    this.dropPositionIds(inputs);
    if (task === "seq2seq-lm") {
      this.dropTokenTypeIds(inputs);
      if (prefix) {
        if (inputs.decoderAttentionMask) inputs.decoderAttentionMask = extendMask(inputs.decoderAttentionMask, P);
        inputs.pastKeyValues = this.prefixPastKeyValues(batch);
      } else {
        if (inputs.attentionMask) inputs.attentionMask = extendMask(inputs.attentionMask, P);
        if (inputs.inputIds || inputs.inputsEmbeds) {
          inputs.inputsEmbeds = this.withPrompts(inputs, batch, taskIds);
          delete inputs.inputIds;
        }
      }
      return this.model.forward(inputs) as ModelOutput;
    }
    if (inputs.attentionMask) inputs.attentionMask = extendMask(inputs.attentionMask, P);
    if (prefix) {
      if (task === "causal-lm" || task === "question-answering") this.dropTokenTypeIds(inputs);
      inputs.pastKeyValues = this.prefixPastKeyValues(batch);
      return this.model.forward(inputs) as ModelOutput;
    }
    if (inputs.tokenTypeIds) {
      if (task === "causal-lm" || task === "question-answering") this.dropTokenTypeIds(inputs);
      else inputs.tokenTypeIds = cat([zeros([batch, P], inputs.tokenTypeIds.dtype), inputs.tokenTypeIds], 1);
    }
    inputs.inputsEmbeds = this.withPrompts(inputs, batch, taskIds);
    delete inputs.inputIds;
    if (task === "causal-lm") {
      if (inputs.labels) inputs.labels = cat([full([batch, P], -100, inputs.labels.dtype), inputs.labels], 1);
      return this.model.forward(inputs) as ModelOutput;
    }
    if (task === "token-classification") {
      const labels = inputs.labels;
      delete inputs.labels;
      const out = this.model.forward(inputs) as ModelOutput;
      const logits = narrow(out.logits, 1, P, out.logits.shape[1]! - P);
      return { ...out, logits, ...(labels ? { loss: tokenLoss(logits, labels) } : {}) };
    }
    return this.model.forward(inputs) as ModelOutput;
  }

  /** The model as generate() drives it: the plain model when disabled, else with the active prompt. */
  generative(taskIds?: Tensor): Generative {
    return this.disabled ? asGenerative(this.model) : this.promptedGenerative(taskIds);
  }

  /**
   * The model as generate() drives it with the active prompt (peft's generate / prepare_inputs_for_generation):
   * position ids from generate are ignored (the model numbers positions from the start of the padded sequence,
   * virtual tokens first) and the attention mask gets num_virtual_tokens leading ones. The first step of a
   * decoder-only model prepends the prompts (or passes the prefixes as the cache); later steps feed the cache.
   * Encoder-decoder: prompts go in front of the encoder input; prefixes are the decoder's first cache.
   */
  private promptedGenerative(taskIds: Tensor | undefined): Generative {
    const model: Generative = asGenerative(this.model);
    const P = this.numVirtualTokens;
    const prefix = this.activeEncoder.isPrefix;
    const self = this;
    // generate() switches its model to eval mode and back: delegate that to this module (encoders + model).
    const target = {
      config: model.config,
      isEncoderDecoder: model.isEncoderDecoder,
      get training() {
        return self.training;
      },
      eval: () => void self.eval(),
      train: (mode = true) => void self.train(mode),
    };
    if (!model.isEncoderDecoder) {
      return Object.assign(target, {
        forward(inputs: Seq2SeqInputs): ModelOutput {
          const ids = inputs.inputIds!;
          const batch = ids.shape[0]!;
          const step: Seq2SeqInputs = {
            ...(inputs.attentionMask ? { attentionMask: extendMask(inputs.attentionMask, P) } : {}),
            ...(inputs.useCache !== undefined ? { useCache: inputs.useCache } : {}),
          };
          if (inputs.pastKeyValues)
            return model.forward({ ...step, inputIds: ids, pastKeyValues: inputs.pastKeyValues }) as ModelOutput;
          if (prefix)
            return model.forward({
              ...step,
              inputIds: ids,
              pastKeyValues: self.prefixPastKeyValues(batch),
            }) as ModelOutput;
          return model.forward({
            ...step,
            inputsEmbeds: self.withPrompts({ inputIds: ids }, batch, taskIds),
          }) as ModelOutput;
        },
      });
    }
    if (!model.encode)
      throw new Error(
        `${model.constructor.name} has no encode(); generation with prompt learning needs an ` +
          `encoder-decoder model that has one`,
      );
    const encode = model.encode.bind(model);
    return Object.assign(target, {
      encode(inputs: Seq2SeqInputs): Tensor {
        if (prefix) return encode(inputs);
        const batch = batchOf(inputs);
        return encode({
          inputsEmbeds: self.withPrompts(inputs, batch, taskIds),
          ...(inputs.attentionMask ? { attentionMask: extendMask(inputs.attentionMask, P) } : {}),
        });
      },
      forward(inputs: Seq2SeqInputs): ModelOutput {
        if (prefix) {
          return model.forward({
            ...inputs,
            pastKeyValues: inputs.pastKeyValues ?? self.prefixPastKeyValues(batchOf(inputs)),
          }) as ModelOutput;
        }
        return model.forward({
          ...inputs,
          ...(inputs.attentionMask ? { attentionMask: extendMask(inputs.attentionMask, P) } : {}),
        }) as ModelOutput;
      },
    });
  }
}
