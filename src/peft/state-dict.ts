/**
 * Adapter state dicts in HF peft's naming: the PeftModel's parameter paths with the adapter name removed
 * ("…c_attn.lora_A.default.weight" → "…c_attn.lora_A.weight"), modules_to_save copies under the original
 * module's path, and the reverse mapping when loading. The host computes them from itself, so every key gets the
 * host's own path in the PeftModel (`keyPrefix`, "base_model.") in front.
 */
import type { Tensor } from "../tensor/index.js";
import type { Module } from "../nn/index.js";
import { fmtShape, sameShape } from "../tensor/index.js";
import type { InjectedLayersMethod } from "./registry.js";
import { ModulesToSaveWrapper } from "./modules-to-save.js";

function wrappers(root: Module, keyPrefix: string): [string, ModulesToSaveWrapper][] {
  return root
    .namedModules()
    .filter((e): e is [string, ModulesToSaveWrapper] => e[1] instanceof ModulesToSaveWrapper)
    .map(([path, w]) => [keyPrefix + path, w]);
}

function prefixedStateDict(root: Module, keyPrefix: string): Map<string, Tensor> {
  return new Map([...root.stateDict()].map(([k, t]) => [keyPrefix + k, t]));
}

/** The tensors saved for one adapter of an injected-layers method, keyed as in adapter_model.safetensors. */
export function adapterStateDict(
  root: Module,
  method: InjectedLayersMethod,
  adapterName: string,
  bias: string,
  keyPrefix: string,
): Map<string, Tensor> {
  const sd = prefixedStateDict(root, keyPrefix);
  const prefix = method.prefix;
  const selected = new Map<string, Tensor>();
  for (const [k, t] of sd) {
    if (k.includes(".modules_to_save.") || k.includes(".original_module.")) continue;
    const isAdapter = k.includes(prefix) && k.includes(adapterName);
    const isBias = k.includes("bias") && !k.includes(prefix);
    if (isAdapter) selected.set(k, t);
    else if (isBias && bias === "all") selected.set(k, t);
  }
  if (bias === "lora_only") {
    for (const k of [...selected.keys()]) {
      const biasKey = `${k.split(prefix)[0]}bias`;
      const baseBias = `${k.split(prefix)[0]}base_layer.bias`;
      for (const b of [biasKey, baseBias]) if (sd.has(b)) selected.set(b, sd.get(b)!);
    }
  }
  for (const [path, w] of wrappers(root, keyPrefix)) {
    if (!w.modules_to_save.has(adapterName)) continue;
    for (const [k, t] of w.modules_to_save.get(adapterName).stateDict()) selected.set(`${path}.${k}`, t);
  }
  const out = new Map<string, Tensor>();
  for (const [k, t] of selected) {
    const renamed = method.renameOnSave ? method.renameOnSave(k, adapterName) : k;
    out.set(renamed.replaceAll(`.${adapterName}`, ""), t);
  }
  return out;
}

/** HF's _insert_adapter_name_into_state_dict: "…lora_A.weight" → "…lora_A.<adapter>.weight", "…lora_embedding_A" → "….<adapter>". */
export function insertAdapterName(key: string, prefix: string, adapterName: string): string {
  if (!key.includes(prefix)) return key;
  const suffix = key.split(prefix)[1]!;
  if (!suffix.includes(".")) return `${key}.${adapterName}`;
  const rest = suffix.split(".").slice(1).join(".");
  const at = key.lastIndexOf(rest);
  return `${key.slice(0, at)}${adapterName}.${rest}`;
}

/**
 * Saved keys → the model's own keys for adapter `adapterName` (peft's set_peft_model_state_dict mapping): the
 * adapter name inserted after the method's prefix, modules_to_save copies under their wrapper.
 */
export function mapSavedKeys(
  root: Module,
  method: InjectedLayersMethod,
  saved: ReadonlyMap<string, Tensor>,
  adapterName: string,
  keyPrefix: string,
): Map<string, Tensor> {
  const wrapperPaths = wrappers(root, keyPrefix).map(([p]) => p);
  const mapped = new Map<string, Tensor>();
  for (const [k, t] of saved) {
    const wrapper = wrapperPaths.find((p) => k.startsWith(`${p}.`));
    let key =
      wrapper !== undefined
        ? `${wrapper}.modules_to_save.${adapterName}.${k.slice(wrapper.length + 1)}`
        : insertAdapterName(k, method.prefix, adapterName);
    if (method.renameOnLoad) key = method.renameOnLoad(key, adapterName);
    mapped.set(key, t);
  }
  return mapped;
}

/**
 * Copy saved adapter tensors into the model. Keys the model lacks, or shapes that differ, mean the adapter was
 * made for another base model (or another config): that is an error naming the keys.
 */
export function loadAdapterStateDict(
  root: Module,
  method: InjectedLayersMethod,
  saved: ReadonlyMap<string, Tensor>,
  adapterName: string,
  where: string,
  keyPrefix: string,
): { missingKeys: string[] } {
  const own = prefixedStateDict(root, keyPrefix);
  const mapped = mapSavedKeys(root, method, saved, adapterName, keyPrefix);
  const unexpected = [...mapped.keys()].filter((k) => !own.has(k));
  if (unexpected.length > 0) {
    throw new Error(
      `${where}: the adapter does not fit this model: ${unexpected.length} tensor(s) have no ` +
        `place in it, e.g. ${unexpected.slice(0, 3).join(", ")}. Was it trained on another base ` +
        `model, or with another config?`,
    );
  }
  for (const [k, t] of mapped) {
    const target = own.get(k)!;
    if (!sameShape(t.shape, target.shape)) {
      throw new Error(
        `${where}: size mismatch for ${k}: the adapter has shape ${fmtShape(t.shape)} but the ` +
          `model expects ${fmtShape(target.shape)} (different base model or rank?)`,
      );
    }
  }
  for (const [k, t] of mapped) own.get(k)!.copy_(t);
  // The adapter's own keys: `<…prefix…>.<adapterName>.…` (a bare ".<name>" test would also catch layer indices: X-LoRA's experts are "0", "1", …).
  const adapterKeys = [...own.keys()].filter((k) =>
    k.split(".").some((part, i, parts) => part.includes(method.prefix) && parts[i + 1] === adapterName),
  );
  return { missingKeys: adapterKeys.filter((k) => !mapped.has(k)) };
}
