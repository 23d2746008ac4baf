/**
 * BaseTuner, the injected-layers host of the adapter contract: methods that inject adapter layers into a model
 * (LoRA, AdaLoRA, IA3, LoHa, LoKr, LLaMA-Adapter) share this — walking the module tree, matching targets,
 * replacing modules by path, freezing everything but the adapters, modules_to_save copies, switching/deleting/
 * disabling adapters, merging and unloading, saving and loading. A method supplies how to wrap one module and its
 * config preparation, and declares its capabilities (merging is on by default).
 */
import { Conv1D, Module, type Linear } from "../../nn/index.js";
import { noGrad, type Tensor } from "../../tensor/index.js";
import type { PreTrainedModel } from "../../models/pretrained.js";
import type { ModelOutput, Seq2SeqInputs, BaseModelOutput } from "../../models/outputs.js";
import { asGenerative, type Generative } from "../../models/generation/index.js";
import type { PeftConfig } from "../config.js";
import {
  HOST_NAME,
  type AdapterCapabilities,
  type AdapterFiles,
  type AdapterHost,
  type Merging,
  type PeftTask,
  type SavedAdapter,
} from "../contract.js";
import { methodFor, type InjectedLayersMethod } from "../registry.js";
import { adapterStateDict, loadAdapterStateDict } from "../state-dict.js";
import { checkAllTargetsFound, checkTarget, type TargetFields } from "../targets.js";
import { ModulesToSaveWrapper, isModuleToSave } from "../modules-to-save.js";
import { BaseTunerLayer } from "./tuner-layer.js";

/** A config of an injection method: the target fields plus modules_to_save. */
export type TunerConfig = PeftConfig & TargetFields & { modules_to_save?: string[] | null; bias?: string };

/** A Linear/Conv1D target's fan_in_fan_out (true for Conv1D); a config saying otherwise gets peft's warning (naming Linear `linearName`) and is corrected. */
export function fanInFanOutFor(
  config: { fan_in_fan_out: boolean },
  target: Linear | Conv1D,
  linearName = "Linear",
): boolean {
  const conv1d = target instanceof Conv1D;
  if (!!config.fan_in_fan_out !== conv1d) {
    process.emitWarning(
      conv1d
        ? "fan_in_fan_out is set to False but the target module is `Conv1D`. Setting fan_in_fan_out to True."
        : `fan_in_fan_out is set to True but the target module is \`${linearName}\`. Setting fan_in_fan_out to False.`,
    );
    config.fan_in_fan_out = conv1d;
  }
  return conv1d;
}

/** The model wrapper of an injection method (HF's LoraModel, IA3Model, …), registered as "model" inside. */
export abstract class BaseTuner<C extends TunerConfig = TunerConfig> extends Module implements AdapterHost, Merging {
  readonly family = "injected-layers";
  model: PreTrainedModel;
  readonly peftConfig = new Map<string, C>();
  activeAdapters: string[] = [];
  /** Substring that marks this method's parameters ("lora_", "ia3_", …). */
  abstract readonly prefix: string;
  /** Injected layers merge into the base weights unless a method says otherwise. */
  readonly capabilities: AdapterCapabilities = { merge: this, weightedCombination: null, optimizerStepHook: null };

  constructor(model: PreTrainedModel) {
    super();
    this.model = this.registerModule("model", model);
  }

  /** Fill in defaults that depend on the model (default targets, "all-linear" expansion, …). */
  protected abstract prepareConfig(config: C): C;

  /** Throw if the method cannot adapt `target` (at path `key`); runs for every match before any layer is created. */
  protected checkTargetModule(_key: string, _target: Module): void {}

  /** Wrap `target` (at path `key`) with this adapter, or add the adapter to an existing wrapper. */
  protected abstract createOrUpdate(config: C, adapterName: string, target: Module, key: string): void;

  /** Add an adapter: wrap every matching module, freeze the rest, set up modules_to_save. */
  injectAdapter(config: C, adapterName: string): C {
    if (this.peftConfig.has(adapterName))
      throw new Error(`an adapter named "${adapterName}" already exists; pick another name or delete it first`);
    const prepared = this.prepareConfig(config);
    // Match first, inject after the checks: a config that matches badly leaves the model untouched.
    const matched: [string, Module][] = [];
    const excluded: string[] = [];
    for (const [key, module] of this.targetCandidates()) {
      const hit = checkTarget(prepared, key);
      if (hit === "excluded") excluded.push(key);
      else if (hit) matched.push([key, module]);
    }
    checkAllTargetsFound(
      prepared,
      matched.map(([key]) => key),
      this.model,
      excluded,
    );
    for (const [key, module] of matched) this.checkTargetModule(key, module);
    if (this.activeAdapters.length === 0) this.activeAdapters = [adapterName];
    for (const [key, module] of matched) this.createOrUpdate(prepared, adapterName, module, key);
    this.peftConfig.set(adapterName, prepared);
    this.markOnlyAdaptersTrainable(prepared);
    this.wrapModulesToSave(prepared, adapterName);
    this.setAdapter(this.activeAdapters);
    if (prepared.inference_mode) for (const p of this.adapterParameters(adapterName)) p.requiresGrad = false;
    return prepared;
  }

  /** Module paths that can be targeted: everything but the insides of adapter layers and saved copies. */
  private targetCandidates(): [string, Module][] {
    const skip: string[] = [];
    const out: [string, Module][] = [];
    for (const [key, m] of this.model.namedModules()) {
      if (key === "" || skip.some((s) => key.startsWith(s))) continue;
      if (m instanceof BaseTunerLayer || m instanceof ModulesToSaveWrapper) {
        skip.push(`${key}.`);
        if (m instanceof ModulesToSaveWrapper) continue;
      }
      out.push([key, m]);
    }
    return out;
  }

  /** Freeze every model parameter that is not this method's, then unfreeze biases as config.bias asks. */
  protected markOnlyAdaptersTrainable(config: C): void {
    for (const [name, p] of this.model.namedParameters()) if (!name.includes(this.prefix)) p.requiresGrad = false;
    if (config.bias === "all") {
      for (const [name, p] of this.model.namedParameters()) if (name.includes("bias")) p.requiresGrad = true;
    } else if (config.bias === "lora_only") {
      for (const layer of this.tunerLayers().map(([, l]) => l)) {
        const b = layer.base_layer.ownParameter("bias");
        if (b) b.requiresGrad = true;
      }
    }
  }

  private wrapModulesToSave(config: C, adapterName: string): void {
    const names = config.modules_to_save;
    if (!names || names.length === 0) return;
    for (const [key, m] of [...this.model.namedModules()]) {
      if (
        key === "" ||
        !isModuleToSave(key, names) ||
        key.split(".").some((part) => part === "modules_to_save" || part === "original_module")
      )
        continue;
      if (m instanceof ModulesToSaveWrapper) m.update(adapterName);
      else this.model.setSubmodule(key, new ModulesToSaveWrapper(m, adapterName));
    }
  }

  /**
   * addWeightedAdapter's argument checks (LoRA, IA3): `adapterName` is new and not empty, `adapters` are one or more
   * existing adapters, and `weights` holds one finite number per adapter.
   */
  protected checkWeightedAdapterArguments(
    adapters: readonly string[],
    weights: readonly number[],
    adapterName: string,
  ): void {
    const names = () => [...this.peftConfig.keys()].map((n) => `"${n}"`).join(", ");
    if (typeof adapterName !== "string" || adapterName === "")
      throw new Error("addWeightedAdapter: the new adapter needs a non-empty name");
    if (this.peftConfig.has(adapterName))
      throw new Error(
        `addWeightedAdapter: an adapter named "${adapterName}" already exists; pick another name or delete it first`,
      );
    if (!Array.isArray(adapters) || adapters.length === 0)
      throw new Error("addWeightedAdapter: give at least one adapter to combine");
    if (!Array.isArray(weights) || weights.length !== adapters.length) {
      throw new Error(
        `addWeightedAdapter: ${adapters.length} adapter(s) but ` +
          `${Array.isArray(weights) ? weights.length : "no"} weights; give one weight per adapter`,
      );
    }
    weights.forEach((w, i) => {
      if (typeof w !== "number" || !Number.isFinite(w))
        throw new Error(
          `addWeightedAdapter: the weight of adapter "${adapters[i]}" must be a finite number, got ${String(w)}`,
        );
    });
    for (const a of adapters)
      if (!this.peftConfig.has(a))
        throw new Error(`addWeightedAdapter: adapter "${a}" does not exist; adapters: ${names()}`);
  }

  /** Adapter layers by path. */
  tunerLayers(): [string, BaseTunerLayer][] {
    return this.model.namedModules().filter((e): e is [string, BaseTunerLayer] => e[1] instanceof BaseTunerLayer);
  }

  /** modules_to_save wrappers by path. */
  savedModules(): [string, ModulesToSaveWrapper][] {
    return this.model
      .namedModules()
      .filter((e): e is [string, ModulesToSaveWrapper] => e[1] instanceof ModulesToSaveWrapper);
  }

  /** Parameters belonging to one adapter (adapter layers and modules_to_save copies). */
  adapterParameters(adapterName: string) {
    const fromLayers = this.tunerLayers().flatMap(([, l]) => l.adapterParameters(adapterName));
    const fromCopies = this.savedModules().flatMap(([, w]) =>
      w.modules_to_save.has(adapterName) ? w.modules_to_save.get(adapterName).parameters() : [],
    );
    return [...fromLayers, ...fromCopies];
  }

  /** Make adapters active (their parameters trainable unless in inference mode, the others frozen). */
  setAdapter(names: string | string[]): void {
    const list = typeof names === "string" ? [names] : names;
    for (const n of list)
      if (!this.peftConfig.has(n))
        throw new Error(`adapter "${n}" not found; adapters: ${[...this.peftConfig.keys()].join(", ")}`);
    for (const [, layer] of this.tunerLayers()) {
      if (layer.merged) layer.unmerge();
      layer.setAdapter(list);
    }
    for (const [, w] of this.savedModules()) w.setAdapter(list[0]!);
    for (const n of list)
      if (this.peftConfig.get(n)!.inference_mode) for (const p of this.adapterParameters(n)) p.requiresGrad = false;
    this.activeAdapters = [...list];
  }

  /** Remove an adapter everywhere. */
  deleteAdapter(name: string): void {
    if (!this.peftConfig.has(name)) throw new Error(`adapter "${name}" does not exist`);
    this.peftConfig.delete(name);
    for (const [, layer] of this.tunerLayers()) layer.deleteAdapter(name);
    for (const [, w] of this.savedModules()) {
      if (w.modules_to_save.has(name)) w.modules_to_save.get(name).dispose();
      w.modules_to_save.remove(name);
    }
    const remaining = [...this.peftConfig.keys()];
    this.activeAdapters = this.activeAdapters.filter((a) => a !== name);
    if (this.activeAdapters.length === 0 && remaining.length > 0) this.setAdapter(remaining[remaining.length - 1]!);
  }

  /** Turn every adapter layer off (true) or back on (false). */
  setAdaptersDisabled(disabled: boolean): void {
    for (const [, layer] of this.tunerLayers()) layer.disableAdapters = disabled;
    for (const [, w] of this.savedModules()) w.disableAdapters = disabled;
  }

  /** Fold adapters (the active ones by default) into the base weights. */
  merge(names?: string[]): void {
    for (const [, layer] of this.tunerLayers()) layer.merge(names ?? this.activeAdapters);
  }

  /** Undo merges. */
  unmerge(): void {
    for (const [, layer] of this.tunerLayers()) layer.unmerge();
  }

  /**
   * Replace every adapter layer by its base layer (after merging when `merge`) and every modules_to_save wrapper
   * by its active copy; returns the plain model.
   */
  private unloadAndMaybeMerge(merge: boolean, names?: string[]): PreTrainedModel {
    for (const [key, layer] of this.tunerLayers()) {
      if (merge) layer.merge(names ?? layer.activeAdapters);
      this.model.setSubmodule(key, layer.base_layer);
    }
    for (const [key, w] of this.savedModules()) this.model.setSubmodule(key, w.activeModule());
    return this.model;
  }

  /** Merge the adapters (the active ones by default), then return the plain model. */
  mergeAndUnload(names?: string[]): PreTrainedModel {
    return noGrad(() => this.unloadAndMaybeMerge(true, names));
  }

  /** Remove the adapter layers without merging; returns the original model. */
  unload(): PreTrainedModel {
    return this.unloadAndMaybeMerge(false);
  }

  /** This host's registry entry. */
  private method(adapterName: string): InjectedLayersMethod {
    const config = this.peftConfig.get(adapterName);
    if (!config)
      throw new Error(`adapter "${adapterName}" not found; adapters: ${[...this.peftConfig.keys()].join(", ")}`);
    const method = methodFor(config.peft_type);
    if (method.family !== "injected-layers") throw new Error(`${config.peft_type} is not an injected-layers method`);
    return method;
  }

  /** Save hook: the adapter's layer tensors and modules_to_save copies, keyed as peft saves them. */
  saveAdapter(adapterName: string): SavedAdapter {
    const bias = String(this.peftConfig.get(adapterName)?.bias ?? "none");
    const tensors = adapterStateDict(this, this.method(adapterName), adapterName, bias, `${HOST_NAME}.`);
    return { tensors: this.finalizeSavedState(adapterName, tensors), sideFiles: new Map() };
  }

  /** Load hook: copy saved tensors into the adapter's layers; tensors the file lacks keep their initial values (with a warning). */
  loadAdapter(adapterName: string, files: AdapterFiles): void {
    const method = this.method(adapterName);
    this.beforeLoadWeights(adapterName);
    const { missingKeys } = noGrad(() =>
      loadAdapterStateDict(this, method, files.tensors, adapterName, files.where, `${HOST_NAME}.`),
    );
    if (missingKeys.length > 0)
      process.emitWarning(
        `${files.where}: adapter weights missing (left at their initial values): ${missingKeys.join(", ")}`,
      );
  }

  /** Called before an adapter's saved tensors are copied in (AdaLoRA resizes its layers to the saved ranks). */
  protected beforeLoadWeights(_adapterName: string): void {}

  /** The tensors to save for an adapter, from the generic selection (AdaLoRA prunes them to the kept ranks). */
  protected finalizeSavedState(_adapterName: string, state: Map<string, Tensor>): Map<string, Tensor> {
    return state;
  }

  /** Run the wrapped model. */
  forward(inputs: Seq2SeqInputs): ModelOutput | BaseModelOutput {
    return this.model.forward(inputs);
  }

  /** Injected layers act inside the model, so every task runs the model's own forward. */
  forwardTask(_task: PeftTask, inputs: Seq2SeqInputs): ModelOutput {
    return this.forward(inputs) as ModelOutput;
  }

  /** The model itself generates: its adapter layers are already in place. */
  generative(): Generative {
    return asGenerative(this.model);
  }
}
