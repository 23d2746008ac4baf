/**
 * peft's get_peft_model_state_dict / set_peft_model_state_dict: one adapter's tensors keyed as in
 * adapter_model.safetensors (adapter name removed), and the reverse (adapter name inserted, modules_to_save copies
 * under their wrapper) with torch's non-strict load report. For a PeftModel the keys start with `base_model.model.`;
 * for a model given adapters by injectAdapterInModel they are the model's own paths.
 */
import type { Module } from "../nn/index.js";
import type { PreTrainedModel } from "../models/pretrained.js";
import { fmtShape, noGrad, sameShape, type Tensor } from "../tensor/index.js";
import { ConfigError, ModelMismatchError } from "../errors.js";
import { HOST_NAME, type AdapterHost } from "./contract.js";
import { PeftModel, injectedHost } from "./peft-model.js";
import { methodFor } from "./registry.js";
import { mapSavedKeys } from "./state-dict.js";

/** What setPeftModelStateDict did not match (torch's load_state_dict(strict=False) result). */
export interface StateDictLoadResult {
  /** The model's keys the state dict did not provide (base weights included, as in torch). */
  missingKeys: string[];
  /** Keys of the state dict, after the adapter name was inserted, that the model has no place for. */
  unexpectedKeys: string[];
}

/** Where a model's adapters live: the host, the module keys are relative to, and the prefix of the host's paths there. */
function adapterSite(model: PeftModel | PreTrainedModel): { host: AdapterHost; root: Module; keyPrefix: string } {
  if (model instanceof PeftModel) return { host: model.base_model, root: model, keyPrefix: `${HOST_NAME}.` };
  const host = injectedHost(model);
  if (!host)
    throw new ConfigError(
      "this model has no adapters",
      "add them with injectAdapterInModel(config, model), or use getPeftModel",
    );
  return { host, root: model, keyPrefix: "" };
}

/** One adapter's tensors, keyed as peft saves them (`base_model.model.<path>.lora_A.weight` for a PeftModel); they are the live parameters. */
export function getPeftModelStateDict(
  model: PeftModel | PreTrainedModel,
  adapterName = "default",
): Map<string, Tensor> {
  const { host, keyPrefix } = adapterSite(model);
  if (!host.peftConfig.has(adapterName))
    throw new ConfigError(
      `getPeftModelStateDict: no adapter named "${adapterName}"`,
      `adapters: ${[...host.peftConfig.keys()].join(", ")}`,
    );
  // The host saves with PeftModel keys; a bare model's keys are its own paths.
  const saved = `${HOST_NAME}.model.`;
  return new Map(
    [...host.saveAdapter(adapterName).tensors].map(([k, t]) => [keyPrefix ? k : k.slice(saved.length), t]),
  );
}

/**
 * Copy a state dict in peft's saved naming into adapter `adapterName`. Unmatched keys are reported, not raised
 * (torch's strict=False); a shape that differs is an error unless `ignoreMismatchedSizes`, which skips it with a
 * warning. Injected-layers methods only (prompt learning adapters load with loadAdapter).
 */
export function setPeftModelStateDict(
  model: PeftModel | PreTrainedModel,
  stateDict: ReadonlyMap<string, Tensor>,
  adapterName = "default",
  opts: { ignoreMismatchedSizes?: boolean } = {},
): StateDictLoadResult {
  const { host, root, keyPrefix } = adapterSite(model);
  const config = host.peftConfig.get(adapterName);
  if (!config)
    throw new ConfigError(
      `setPeftModelStateDict: no adapter named "${adapterName}"`,
      `adapters: ${[...host.peftConfig.keys()].join(", ")}`,
    );
  const method = methodFor(config.peft_type);
  if (method.family !== "injected-layers")
    throw new ConfigError(
      `setPeftModelStateDict supports injected-layers methods; ${config.peft_type} adapters load with loadAdapter`,
    );
  const mapped = mapSavedKeys(keyPrefix ? host : root, method, stateDict, adapterName, keyPrefix);
  const own = root.stateDict();
  const mismatched = [...mapped].filter(([k, t]) => own.has(k) && !sameShape(t.shape, own.get(k)!.shape));
  if (mismatched.length > 0 && !opts.ignoreMismatchedSizes) {
    const list = mismatched
      .map(([k, t]) => `${k}: ${fmtShape(t.shape)} in the state dict, ${fmtShape(own.get(k)!.shape)} in the model`)
      .join("; ");
    throw new ModelMismatchError(
      `setPeftModelStateDict: size mismatch for ${list}`,
      "was the state dict made for another base model or rank? pass ignoreMismatchedSizes to skip these tensors",
    );
  }
  if (mismatched.length > 0)
    process.emitWarning(
      `setPeftModelStateDict: tensors of other shapes were skipped: ${mismatched.map(([k]) => k).join(", ")}`,
    );
  const skipped = new Set(mismatched.map(([k]) => k));
  noGrad(() => {
    for (const [k, t] of mapped) if (own.has(k) && !skipped.has(k)) own.get(k)!.copy_(t);
  });
  return {
    missingKeys: [...own.keys()].filter((k) => !mapped.has(k) || skipped.has(k)),
    unexpectedKeys: [...mapped.keys()].filter((k) => !own.has(k)),
  };
}
