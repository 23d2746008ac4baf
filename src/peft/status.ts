/**
 * peft's get_layer_status / get_model_status: what every adapter layer of a model holds, which adapters are active,
 * merged and trainable, and the model-wide summary with "irregular" where the layers disagree. Field names are
 * camelCased; the values and their order are peft's (so `JSON` of a status equals peft's dataclasses.asdict after
 * renaming the keys).
 */
import type { Module } from "../nn/index.js";
import { ConfigError } from "../errors.js";
import { PeftModel, countTrainableParameters } from "./peft-model.js";
import { BaseTunerLayer } from "./tuners/tuner-layer.js";

/** "irregular": the layers (or an adapter's parameters) disagree. */
export type Irregular = "irregular";

/** One adapter layer's status (peft's TunerLayerStatus). */
export interface TunerLayerStatus {
  /** Module path, e.g. `model.transformer.h.0.attn.c_attn` (from the host for a PeftModel, as peft). */
  name: string;
  /** The layer's kind as peft prints it, e.g. `lora.Linear`. */
  moduleType: string;
  enabled: boolean;
  activeAdapters: string[];
  mergedAdapters: string[];
  /** Per adapter: whether all its parameters in this layer train (true), none (false), or some. */
  requiresGrad: Record<string, boolean | Irregular>;
  availableAdapters: string[];
  /** Per adapter, the devices its parameters live on (always ["cpu"]: tensors are in host memory). */
  devices: Record<string, string[]>;
}

/** The model-wide summary (peft's TunerModelStatus). */
export interface TunerModelStatus {
  baseModelType: string;
  adapterModelType: string;
  peftTypes: Record<string, string>;
  trainableParams: number;
  totalParams: number;
  numAdapterLayers: number;
  enabled: boolean | Irregular;
  activeAdapters: string[] | Irregular;
  mergedAdapters: string[] | Irregular;
  requiresGrad: Record<string, boolean | Irregular>;
  availableAdapters: string[];
  devices: Record<string, string[]>;
}

/** All true → true, all false → false, else "irregular" (peft's check_irrgular). */
function agreement(vals: readonly (boolean | Irregular)[]): boolean | Irregular {
  if (vals.every((v) => v === true)) return true;
  if (vals.every((v) => v === false)) return false;
  return "irregular";
}

/** Push `value` onto the list kept under `key`. */
function collect<T>(into: Map<string, T[]>, key: string, ...value: T[]): void {
  if (!into.has(key)) into.set(key, []);
  into.get(key)!.push(...value);
}

/** The status of each adapter layer of a PeftModel (injected-layers methods) or of a model with injected adapters. */
export function getLayerStatus(model: PeftModel | Module): TunerLayerStatus[] {
  if (model instanceof PeftModel && model.base_model.family !== "injected-layers") {
    throw new ConfigError(
      `getLayerStatus() got a ${model.activePeftConfig.peft_type} model; prompt learning methods ` +
        `have no adapter layers`,
    );
  }
  const root: Module = model instanceof PeftModel ? model.base_model : model;
  const out: TunerLayerStatus[] = [];
  for (const [name, layer] of root.namedModules()) {
    if (!(layer instanceof BaseTunerLayer)) continue;
    const grads = new Map<string, boolean[]>();
    for (const adapter of layer.adapterNames())
      collect(grads, adapter, ...layer.adapterParameters(adapter).map((p) => p.requiresGrad));
    const available = layer.adapterNames().sort();
    out.push({
      name,
      moduleType: layer.moduleType(),
      enabled: !layer.disableAdapters,
      activeAdapters: [...layer.activeAdapters],
      mergedAdapters: [...layer.mergedAdapters],
      requiresGrad: Object.fromEntries([...grads].map(([k, v]) => [k, agreement(v)])),
      availableAdapters: available,
      devices: Object.fromEntries(available.map((a) => [a, ["cpu"]])),
    });
  }
  if (out.length === 0) {
    throw new ConfigError(
      "No adapter layers found in the model, please ensure that it's a PEFT model or that you " +
        "have PEFT adapters injected in the model.",
    );
  }
  return out;
}

/** The model-wide adapter status: counts, and for each field the layers' common value or "irregular". */
export function getModelStatus(model: PeftModel | Module): TunerModelStatus {
  const layers = getLayerStatus(model);
  const isPeft = model instanceof PeftModel;
  const [trainableParams, totalParams] = isPeft ? model.getNbTrainableParameters() : countTrainableParameters(model);

  const enabledSet = new Set(layers.map((l) => l.enabled));
  const activeSet = new Set(layers.map((l) => JSON.stringify(l.activeAdapters)));
  const mergedAll = new Set(layers.flatMap((l) => l.mergedAdapters));
  // An adapter merged in one layer but present and unmerged in another leaves the model in a mixed state.
  const mixed = layers.some((l) => l.availableAdapters.some((a) => !l.mergedAdapters.includes(a) && mergedAll.has(a)));
  const grads = new Map<string, (boolean | Irregular)[]>();
  for (const l of layers) for (const [k, v] of Object.entries(l.requiresGrad)) collect(grads, k, v);
  const devices = new Map<string, string[]>();
  for (const l of layers) for (const [k, v] of Object.entries(l.devices)) collect(devices, k, ...v);

  return {
    baseModelType: isPeft ? model.getBaseModel().constructor.name : model.constructor.name,
    adapterModelType: isPeft ? model.base_model.constructor.name : "None",
    peftTypes: isPeft ? Object.fromEntries([...model.base_model.peftConfig].map(([k, c]) => [k, c.peft_type])) : {},
    trainableParams,
    totalParams,
    numAdapterLayers: layers.length,
    enabled: enabledSet.size === 1 ? [...enabledSet][0]! : "irregular",
    activeAdapters: activeSet.size === 1 ? layers[0]!.activeAdapters : "irregular",
    mergedAdapters: mixed ? "irregular" : [...mergedAll].sort(),
    requiresGrad: Object.fromEntries([...grads].map(([k, v]) => [k, agreement(v)])),
    availableAdapters: [...new Set(layers.flatMap((l) => l.availableAdapters))].sort(),
    devices: Object.fromEntries([...devices].map(([k, v]) => [k, [...new Set(v)].sort()])),
  };
}
