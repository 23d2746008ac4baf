/**
 * peft's hotswap_adapter for LoRA: replace a loaded adapter's weights and scaling in place with those of another
 * saved adapter, keeping its name (serving swaps adapters without rebuilding the model). The configs must agree on
 * what the weights cannot carry (use_rslora, lora_dropout, alpha_pattern, use_dora); the new adapter may target
 * fewer layers (the others are zeroed) but no new ones. A smaller rank is zero-padded (peft's fallback, the same
 * outputs); a larger one replaces the factors with tensors of the new rank (what peft's torch.utils.swap_tensors does).
 *
 * Where this differs from peft 0.15.2: scaling follows rank_pattern / alpha_pattern by module path (peft matches the
 * patterns against parameter names, so they never apply), and embedding layers are swapped too (peft looks for their
 * scaling on the parent module and fails).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { loadSafetensors } from "../../../io/safetensors.js";
import { fmtShape, noGrad, parameter, sameShape, tensor, zeros, type Tensor } from "../../../tensor/index.js";
import { Linear } from "../../../nn/index.js";
import { CheckpointError, ConfigError, ModelMismatchError } from "../../../errors.js";
import type { PeftConfig } from "../../config.js";
import { HOST_NAME } from "../../contract.js";
import { readAdapterConfig, type PeftModel } from "../../peft-model.js";
import { insertAdapterName } from "../../state-dict.js";
import type { LoraConfig } from "./config.js";
import { LoraEmbedding, LoraLayer, LoraLinear, loraScaling } from "./layer.js";
import { LoraModel } from "./model.js";

/** Config fields that change a LoRA adapter's output besides its weights, so hot-swapped adapters must agree on them. */
const CONFIG_KEYS_TO_CHECK: Record<string, readonly string[]> = {
  LORA: ["use_rslora", "lora_dropout", "alpha_pattern", "use_dora"],
};

/** peft's check_hotswap_configs_compatible: the same method, and equal values of the fields the weights cannot carry. */
export function checkHotswapConfigsCompatible(config0: PeftConfig, config1: PeftConfig): void {
  if (config0.peft_type !== config1.peft_type)
    throw new ConfigError(`Incompatible PEFT types found: ${config0.peft_type} and ${config1.peft_type}`);
  const keys = CONFIG_KEYS_TO_CHECK[config0.peft_type];
  if (!keys)
    throw new ConfigError(
      `Hotswapping only supports ${Object.keys(CONFIG_KEYS_TO_CHECK).join(", ")} but ${config0.peft_type} was passed.`,
    );
  for (const key of keys) {
    const [v0, v1] = [JSON.stringify(config0[key] ?? null), JSON.stringify(config1[key] ?? null)];
    if (v0 !== v1)
      throw new ConfigError(
        `Configs are incompatible: for ${key}, ${v0} != ${v1}`,
        "only adapters trained with the same settings for these fields can be hot-swapped; load " +
          "the adapter with loadAdapter instead",
      );
  }
}

/** Swap the LoRA adapter saved in folder `dir` into the loaded adapter `adapterName` of `model` (peft's hotswap_adapter). */
export function hotswapAdapter(model: PeftModel, dir: string, adapterName: string): void {
  const config = readAdapterConfig(dir, false);
  checkHotswapConfigsCompatible(model.activePeftConfig, config);
  const file = join(dir, "adapter_model.safetensors");
  if (!existsSync(file))
    throw new CheckpointError(`${dir} has no adapter_model.safetensors; is this a PEFT adapter folder?`);
  const saved = loadSafetensors(file);
  try {
    const named = new Map([...saved].map(([k, t]) => [insertAdapterName(k, "lora_", adapterName), t]));
    hotswapAdapterFromStateDict(model, named, adapterName, config as LoraConfig);
  } finally {
    for (const t of saved.values()) t.dispose();
  }
}

/**
 * peft's hotswap_adapter_from_state_dict: `stateDict` is keyed as the PeftModel's own parameters (adapter name
 * inserted). Every key must exist in the model; the adapter's tensors it lacks are zeroed; each layer's scaling
 * becomes the new config's. A merged adapter must be unmerged first (its delta is in the base weights).
 */
export function hotswapAdapterFromStateDict(
  model: PeftModel,
  stateDict: ReadonlyMap<string, Tensor>,
  adapterName: string,
  config: LoraConfig,
): void {
  const host = model.base_model;
  if (!(host instanceof LoraModel))
    throw new ConfigError(
      `hot-swapping supports LoRA models; this model's adapters are ${model.activePeftConfig.peft_type}`,
    );
  if (host.tunerLayers().some(([, l]) => l.mergedAdapters.includes(adapterName))) {
    throw new ConfigError(
      `cannot hot-swap adapter "${adapterName}" while it is merged into the base weights`,
      "call unmergeAdapter() first",
    );
  }
  const own = model.stateDict();
  const unexpected = [...stateDict.keys()].filter((k) => !own.has(k));
  if (unexpected.length > 0) {
    throw new ModelMismatchError(
      `Hot swapping the adapter did not succeed, unexpected keys found: ${unexpected.join(", ")}.`,
      "the new adapter targets layers the loaded one does not; load it with loadAdapter instead",
    );
  }
  // Check every shape before changing anything, so a refused swap leaves the model as it was.
  const layers = new Map([...stateDict.keys()].map((k) => [k, owningLayer(model, k)]));
  const grown = new Set<string>();
  for (const [k, t] of stateDict) if (swapKind(own.get(k)!, t, k) === "grow") grown.add(k);
  for (const k of grown) {
    const partner = k.replace(
      /lora_(embedding_)?([AB])\./,
      (_, e: string | undefined, f: string) => `lora_${e ?? ""}${f === "A" ? "B" : "A"}.`,
    );
    if (!grown.has(partner))
      throw new ModelMismatchError(
        `Hot swapping the adapter did not succeed: ${k} has a larger rank than the loaded adapter ` +
          `but ${partner} does not`,
        "a larger rank needs both factors, A and B, in the new adapter",
      );
  }
  const modelPrefix = `${HOST_NAME}.model.`;
  noGrad(() => {
    for (const k of own.keys())
      if (k.includes("lora_") && k.includes(adapterName) && !stateDict.has(k))
        own.get(k)!.copy_(zeros(own.get(k)!.shape));
    for (const [k, t] of stateDict) {
      const { layer, path } = layers.get(k)!;
      layer.setScale(adapterName, loraScaling(host.settingsFor(config, path.slice(modelPrefix.length))));
      if (grown.has(k)) {
        replaceFactor(layer, k.slice(path.length + 1).split(".")[0]!, adapterName, t, own.get(k)!.requiresGrad);
        continue;
      }
      const padded = paddedInto(own.get(k)!, t);
      own.get(k)!.copy_(padded);
      if (padded !== t) padded.dispose();
    }
  });
}

/** The LoRA layer a parameter key belongs to, and the layer's path in the PeftModel. */
function owningLayer(model: PeftModel, key: string): { layer: LoraLayer; path: string } {
  const parts = key.split(".");
  for (let n = parts.length - 1; n > 0; n--) {
    const path = parts.slice(0, n).join(".");
    const m = model.getSubmodule(path);
    if (m instanceof LoraLayer) return { layer: m, path };
  }
  throw new ModelMismatchError(`Hot swapping the adapter did not succeed: ${key} is not a parameter of a LoRA layer`);
}

/** How `t` goes into `target`: copied, zero-padded to its rank, or replacing it at a larger rank; other shapes are refused. */
function swapKind(target: Tensor, t: Tensor, key: string): "copy" | "pad" | "grow" {
  if (sameShape(target.shape, t.shape)) return "copy";
  // The rank is the rows of A (lora_A, lora_embedding_A) and the columns of B.
  const rankDim = /\.lora_(embedding_)?A\./.test(key) ? 0 : 1;
  if (target.rank === 2 && t.rank === 2 && target.shape[1 - rankDim] === t.shape[1 - rankDim])
    return t.shape[rankDim]! < target.shape[rankDim]! ? "pad" : "grow";
  throw new ModelMismatchError(
    `Incompatible shapes found for LoRA weights ${key}: ${fmtShape(target.shape)} vs ${fmtShape(t.shape)}`,
    "only the rank may differ between hot-swapped adapters",
  );
}

/** `t` in the shape of `target`: itself when equal, else zero-padded along the rank dimension (rows of A, columns of B). */
function paddedInto(target: Tensor, t: Tensor): Tensor {
  if (sameShape(target.shape, t.shape)) return t;
  const [rows, cols] = target.shape as [number, number];
  const [r, c] = t.shape as [number, number];
  const src = t.dataSync(),
    out = new Float32Array(rows * cols);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[i * cols + j] = src[i * c + j]!;
  return tensor(out, [rows, cols]);
}

/** Put factor `attr` (lora_A, lora_B, lora_embedding_A/B) of `adapter` back at the new tensor's rank, and record that rank. */
function replaceFactor(layer: LoraLayer, attr: string, adapter: string, t: Tensor, requiresGrad: boolean): void {
  const value = parameter(tensor(t.dataSync().slice(), [...t.shape]));
  value.requiresGrad = requiresGrad;
  if (layer instanceof LoraLinear && (attr === "lora_A" || attr === "lora_B")) {
    const [out, inp] = t.shape as [number, number];
    const replacement = new Linear(inp, out, { bias: false });
    replacement.weight.dispose();
    replacement.weight = replacement.registerParameter("weight", value);
    layer[attr].get(adapter).dispose();
    layer[attr].set(adapter, replacement);
  } else if (layer instanceof LoraEmbedding && (attr === "lora_embedding_A" || attr === "lora_embedding_B")) {
    layer[attr].ownParameter(adapter)?.dispose();
    layer[attr].registerParameter(adapter, value);
  } else {
    throw new ModelMismatchError(
      `Hot swapping the adapter did not succeed: cannot change the rank of ${attr} in a ${layer.moduleType()} layer`,
    );
  }
  layer.r.set(adapter, layer.loraFactors(adapter).A.shape[0]!);
}
