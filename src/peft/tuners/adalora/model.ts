/**
 * AdaLoraModel (peft 0.15.2): AdaLoRA's SVD-form layers injected like LoRA's, the orthogonality penalty added to
 * the loss, the rank allocation driven by updateAndAllocate(step), and the resizing of layers / saved tensors
 * to the kept ranks (rank_pattern).
 */
import { Conv1D, Linear, type Module } from "../../../nn/index.js";
import type { ModelOutput, BaseModelOutput, Seq2SeqInputs } from "../../../models/outputs.js";
import {
  add,
  div,
  matmul,
  mul,
  sqrt,
  square,
  sub,
  sum,
  tensor,
  transpose,
  type Tensor,
} from "../../../tensor/index.js";
import type { AdapterCapabilities, OptimizerStepHook } from "../../contract.js";
import { BaseTuner, fanInFanOutFor } from "../tuner.js";
import { allLinearTargets, defaultTargets } from "../../targets.js";
import { makeAdaLoraConfig, type AdaLoraConfig } from "./config.js";
import { AdaLoraLinear, type AdaLoraSettings } from "./layer.js";
import { RankAllocator, applyMask, type NamedLayer, type RankPattern } from "./allocator.js";

/** peft's TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING (not LoRA's: e.g. t5 adapts q, k, v, o, wi, wo). */
export const ADALORA_TARGETS: Record<string, string[]> = {
  t5: ["q", "k", "v", "o", "wi", "wo"],
  mt5: ["q", "k", "v", "o", "wi_0", "wi_1", "wo"],
  bart: ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
  gpt2: ["c_attn"],
  bloom: ["query_key_value"],
  opt: ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
  gptj: ["q_proj", "v_proj"],
  gpt_neox: ["query_key_value"],
  gpt_neo: ["q_proj", "v_proj"],
  llama: ["q_proj", "v_proj"],
  bert: ["query", "value"],
  roberta: ["query", "key", "value", "dense"],
  "deberta-v2": ["query_proj", "key_proj", "value_proj", "dense"],
  gpt_bigcode: ["c_attn"],
  deberta: ["in_proj"],
  qwen2: ["q_proj", "v_proj"],
};

/** The module path of a rank_pattern key: "<path>.lora_E" or "<path>.lora_E.<adapter>". */
export function rankPatternModule(key: string, adapterName: string): string {
  for (const suffix of [`.lora_E.${adapterName}`, ".lora_E"])
    if (key.endsWith(suffix)) return key.slice(0, -suffix.length);
  throw new Error(`rank_pattern key "${key}" does not name a lora_E ("<module path>.lora_E")`);
}

/** AdaLoRA injected into a model; it declares the per-step hook that drives its rank allocation. */
export class AdaLoraModel extends BaseTuner<AdaLoraConfig> implements OptimizerStepHook {
  readonly prefix = "lora_";
  override readonly capabilities: AdapterCapabilities = {
    merge: this,
    weightedCombination: null,
    optimizerStepHook: this,
  };
  /** The adapter being trained (AdaLoRA trains one adapter at a time), or null when all are loaded for inference. */
  trainableAdapterName: string | null = null;
  /** The rank allocator of the trainable adapter. */
  rankAllocator: RankAllocator | null = null;

  protected prepareConfig(config: AdaLoraConfig): AdaLoraConfig {
    const c: AdaLoraConfig = { ...config };
    if (c.target_modules === null)
      c.target_modules = defaultTargets(ADALORA_TARGETS, this.model.config.model_type, "AdaLoRA");
    else if (c.target_modules === "all-linear") c.target_modules = allLinearTargets(this.model, c.task_type);
    return c;
  }

  /** Add an adapter; at most one may be trainable (the others need inference_mode), as in peft. */
  override injectAdapter(fields: AdaLoraConfig, adapterName: string): AdaLoraConfig {
    // Plain objects (not made by AdaLoraConfig()) get the defaults and checks too.
    const config = makeAdaLoraConfig(fields, false);
    const trainable =
      [...this.peftConfig.values()].filter((c) => !c.inference_mode).length + (config.inference_mode ? 0 : 1);
    if (trainable > 1) {
      throw new Error(
        "AdaLoraModel supports only 1 trainable adapter. When using multiple adapters, set " +
          "inference_mode to True for all adapters except the one you want to train.",
      );
    }
    if (this.peftConfig.size > 0 && config.bias !== "none") {
      throw new Error(
        "AdaLoraModel supports only 1 adapter with bias. When using multiple adapters, set bias to " +
          "'none' for all adapters.",
      );
    }
    const prepared = super.injectAdapter(config, adapterName);
    if (!prepared.inference_mode) {
      this.trainableAdapterName = adapterName;
      this.rankAllocator = new RankAllocator(prepared, adapterName, this.adaLoraLayers());
    }
    return prepared;
  }

  override deleteAdapter(name: string): void {
    super.deleteAdapter(name);
    if (this.trainableAdapterName === name) {
      this.trainableAdapterName = null;
      this.rankAllocator = null;
    }
  }

  /** The AdaLoRA layers by module path. */
  adaLoraLayers(): NamedLayer[] {
    return this.tunerLayers().filter((e): e is [string, AdaLoraLinear] => e[1] instanceof AdaLoraLinear);
  }

  private settings(config: AdaLoraConfig, r: number): AdaLoraSettings {
    return { r, alpha: config.lora_alpha, dropout: config.lora_dropout, initWeights: config.init_lora_weights };
  }

  protected createOrUpdate(config: AdaLoraConfig, adapterName: string, target: Module, key: string): void {
    const settings = this.settings(config, config.init_r);
    if (target instanceof AdaLoraLinear) {
      target.updateLayer(adapterName, settings);
      return;
    }
    if (!(target instanceof Conv1D || target instanceof Linear)) {
      throw new Error(
        `Target module ${key} (${target.constructor.name}) is not supported by AdaLoRA. Currently, ` +
          `only Linear and GPT-2's Conv1D are supported.`,
      );
    }
    // peft's AdaLoRA warning names Linear "torch.nn.Linear".
    const layer = new AdaLoraLinear(target, fanInFanOutFor(config, target, "torch.nn.Linear"));
    layer.activeAdapters = [...this.activeAdapters];
    layer.updateLayer(adapterName, settings);
    this.model.setSubmodule(key, layer);
  }

  /**
   * orth_reg_weight × the mean, over every lora_A and lora_B of the adapter, of ‖AAᵀ − I‖_F and ‖BᵀB − I‖_F
   * (not squared; rank-0 layers count with 0), as peft's AdaLoraModel.forward adds to the loss. null when no
   * layer has a positive rank.
   */
  orthogonalRegularization(adapterName: string): Tensor | null {
    let total: Tensor | null = null;
    let count = 0;
    for (const [, layer] of this.adaLoraLayers()) {
      if (!layer.hasAdapter(adapterName)) continue;
      const r = layer.r.get(adapterName)!;
      for (const which of ["A", "B"] as const) {
        count++;
        if (r === 0) continue;
        const p = which === "A" ? layer.A(adapterName) : layer.B(adapterName);
        const cov = which === "A" ? matmul(p, transpose(p)) : matmul(transpose(p), p);
        const norm = sqrt(sum(square(sub(cov, identity(r)))));
        total = total ? add(total, norm) : norm;
      }
    }
    if (!total) return null;
    const weight = this.peftConfig.get(adapterName)!.orth_reg_weight;
    return mul(div(total, count), weight);
  }

  /** Run the model; when it returns a loss, add the orthogonality penalty of the trainable adapter (as peft). */
  override forward(inputs: Seq2SeqInputs): ModelOutput | BaseModelOutput {
    const out = this.model.forward(inputs) as ModelOutput;
    if (out.loss) {
      const name = this.trainableAdapterName;
      if (name === null) {
        throw new Error(
          "AdaLoRA adds its orthogonality penalty to the loss of the trainable adapter, and this " +
            "model has none (it was loaded for inference): " +
            "load it with { isTrainable: true } to compute a loss, or call forward without labels and " +
            "compute the loss from the logits",
        );
      }
      const weight = this.peftConfig.get(name)!.orth_reg_weight;
      if (!(weight > 0)) throw new Error(`orth_reg_weight should be greater than 0, got ${weight}`);
      const reg = this.orthogonalRegularization(name);
      if (reg) out.loss = add(out.loss, reg);
    }
    return out;
  }

  private requireTrainable(what: string): { name: string; config: AdaLoraConfig; allocator: RankAllocator } {
    const name = this.trainableAdapterName;
    if (name === null || !this.rankAllocator) {
      throw new Error(
        `${what} needs a trainable AdaLoRA adapter, but every adapter was added with ` +
          `inference_mode (load with { isTrainable: true } to train)`,
      );
    }
    return { name, config: this.peftConfig.get(name)!, allocator: this.rankAllocator };
  }

  /**
   * Update the importance scores and the rank budget, and mask the least important triplets (peft's
   * update_and_allocate). Call it every training step after optimizer.step() and before zeroGrad() — it reads
   * the gradients — with the 0-based global step; the Trainer does this for AdaLoRA models. Before total_step −
   * tfinal it updates the scores (masking on the budget schedule); at total_step − tfinal it fixes the final
   * rank_pattern; after that it re-applies that pattern (the optimizer revives masked values otherwise).
   */
  updateAndAllocate(globalStep: number): void {
    const { config, allocator } = this.requireTrainable("updateAndAllocate");
    if (!Number.isInteger(globalStep) || globalStep < 0)
      throw new Error(`updateAndAllocate: the global step must be an integer ≥ 0, got ${globalStep}`);
    const layers = this.adaLoraLayers();
    const end = config.total_step! - config.tfinal;
    if (globalStep < end) {
      const { rankPattern } = allocator.updateAndAllocate(layers, globalStep);
      if (rankPattern) config.rank_pattern = rankPattern;
    } else if (globalStep === end) {
      config.rank_pattern = allocator.updateAndAllocate(layers, globalStep, true).rankPattern;
      allocator.resetIpt();
    } else if (config.rank_pattern) {
      this.maskUsingRankPattern(config.rank_pattern);
    }
  }

  /** The per-step hook: updateAndAllocate (the Trainer calls it after each optimizer step). */
  afterOptimizerStep(globalStep: number): void {
    this.updateAndAllocate(globalStep);
  }

  /** Set the total number of training steps of the schedule (peft's set_total_step). */
  setTotalStep(totalStep: number): void {
    const { config } = this.requireTrainable("setTotalStep");
    if (!Number.isInteger(totalStep) || totalStep <= 0)
      throw new Error(`total_step must be an integer > 0, got ${totalStep}`);
    config.total_step = totalStep;
  }

  /** Zero E of the triplets a rank pattern drops (peft's mask_using_rank_pattern). */
  maskUsingRankPattern(pattern: RankPattern): void {
    const { name } = this.requireTrainable("maskUsingRankPattern");
    for (const [key, keep] of Object.entries(pattern)) {
      const layer = this.layerAt(rankPatternModule(key, name));
      if (layer.hasAdapter(name)) applyMask(layer.E(name), keep);
    }
  }

  private layerAt(path: string): AdaLoraLinear {
    const m = this.model.getSubmodule(path);
    if (!(m instanceof AdaLoraLinear))
      throw new Error(`rank_pattern names ${path}, which is not an AdaLoRA layer of this model`);
    return m;
  }

  /**
   * Re-create each layer named in the rank pattern at its kept rank, keeping the kept triplets' values (peft's
   * resize_modules_by_rank_pattern, done before an adapter's saved, pruned tensors are loaded). Layers already at
   * the kept rank are left alone.
   */
  resizeModulesByRankPattern(pattern: RankPattern, adapterName: string): void {
    const config = this.peftConfig.get(adapterName);
    if (!config) throw new Error(`adapter "${adapterName}" not found`);
    for (const [key, keep] of Object.entries(pattern)) {
      const layer = this.layerAt(rankPatternModule(key, adapterName));
      const kept = keep.filter((k) => k).length;
      const r = layer.r.get(adapterName);
      if (r === undefined || r === kept) continue;
      layer.resize(adapterName, keep, this.settings(config, kept));
    }
    for (const p of this.adapterParameters(adapterName))
      p.requiresGrad = !config.inference_mode && this.activeAdapters.includes(adapterName);
    if (this.trainableAdapterName === adapterName)
      this.rankAllocator = new RankAllocator(config, adapterName, this.adaLoraLayers());
  }

  /**
   * Prune an adapter's saved tensors ("base_model.model.<path>.lora_A" …) to the kept ranks (peft's
   * resize_state_dict_by_rank_pattern): rows of lora_A and lora_E, columns of lora_B.
   */
  resizeStateDictByRankPattern(
    pattern: RankPattern,
    state: Map<string, Tensor>,
    adapterName: string,
  ): Map<string, Tensor> {
    for (const [key, keep] of Object.entries(pattern)) {
      const prefix = rankPatternModule(key, adapterName);
      const kept = keep.flatMap((k, i) => (k ? [i] : []));
      for (const part of ["lora_E", "lora_A", "lora_B"] as const) {
        const k = `base_model.model.${prefix}.${part}`;
        const t = state.get(k);
        if (!t) continue;
        const axis = part === "lora_B" ? 1 : 0;
        if (t.shape[axis] === kept.length) continue;
        if (t.shape[axis] !== keep.length)
          throw new Error(`rank_pattern["${key}"] has ${keep.length} entries but ${k} has rank ${t.shape[axis]}`);
        state.set(k, selectRanks(t, axis, kept));
      }
    }
    return state;
  }

  /** Before an adapter's saved tensors are loaded: resize its layers to the config's rank_pattern. */
  protected override beforeLoadWeights(adapterName: string): void {
    const pattern = this.peftConfig.get(adapterName)?.rank_pattern;
    if (pattern) this.resizeModulesByRankPattern(pattern, adapterName);
  }

  /**
   * The tensors to save for an adapter: pruned to its rank_pattern, whose keys lose the adapter name (peft
   * rewrites the config's rank_pattern this way when saving, so adapter_config.json has "<path>.lora_E" keys).
   */
  protected override finalizeSavedState(adapterName: string, state: Map<string, Tensor>): Map<string, Tensor> {
    const config = this.peftConfig.get(adapterName);
    if (!config?.rank_pattern) return state;
    const stripped: RankPattern = {};
    for (const [k, v] of Object.entries(config.rank_pattern))
      stripped[`${rankPatternModule(k, adapterName)}.lora_E`] = v;
    config.rank_pattern = stripped;
    return this.resizeStateDictByRankPattern(stripped, state, adapterName);
  }
}

/** The r × r identity. */
function identity(r: number): Tensor {
  const values = new Float32Array(r * r);
  for (let i = 0; i < r; i++) values[i * r + i] = 1;
  return tensor(values, [r, r]);
}

/** The entries of a 2-D tensor at the given indices along `axis`, as a new tensor (empty when none). */
function selectRanks(t: Tensor, axis: 0 | 1, indices: readonly number[]): Tensor {
  const [rows, cols] = t.shape as [number, number];
  const data = t.dataSync();
  const k = indices.length;
  const out = new Float32Array(axis === 0 ? k * cols : rows * k);
  if (axis === 0)
    indices.forEach((src, dst) => {
      out.set(data.subarray(src * cols, (src + 1) * cols), dst * cols);
    });
  else
    for (let i = 0; i < rows; i++)
      indices.forEach((src, dst) => {
        out[i * k + dst] = data[i * cols + src]!;
      });
  return tensor(out, axis === 0 ? [k, cols] : [rows, k]);
}
