/**
 * peft's get_peft_model_state_dict / set_peft_model_state_dict on a PeftModel: one adapter's tensors keyed as in
 * adapter_model.safetensors (adapter name removed), and the reverse (adapter name inserted, modules_to_save copies
 * under their wrapper) with torch's non-strict load report.
 */
import { fmtShape, noGrad, sameShape, type Tensor } from "../tensor/index.js";
import { ConfigError, ModelMismatchError } from "../errors.js";
import { HOST_NAME } from "./contract.js";
import type { PeftModel } from "./peft-model.js";
import { methodFor } from "./registry.js";
import { mapSavedKeys } from "./state-dict.js";

/** What setPeftModelStateDict did not match (torch's load_state_dict(strict=False) result). */
export interface StateDictLoadResult {
  /** The PeftModel's keys the state dict did not provide (base weights included, as in torch). */
  missingKeys: string[];
  /** Keys of the state dict, after the adapter name was inserted, that the model has no place for. */
  unexpectedKeys: string[];
}

/** One adapter's tensors, keyed as peft saves them (`base_model.model.<path>.lora_A.weight`); they are the live parameters. */
export function getPeftModelStateDict(model: PeftModel, adapterName = "default"): Map<string, Tensor> {
  return model.adapterStateDict(adapterName);
}

/**
 * Copy a state dict in peft's saved naming into adapter `adapterName`. Unmatched keys are reported, not raised
 * (torch's strict=False); a shape that differs is an error unless `ignoreMismatchedSizes`, which skips it with a
 * warning. Injected-layers methods only (prompt learning adapters load with loadAdapter).
 */
export function setPeftModelStateDict(
  model: PeftModel, stateDict: ReadonlyMap<string, Tensor>, adapterName = "default", opts: { ignoreMismatchedSizes?: boolean } = {},
): StateDictLoadResult {
  const config = model.peftConfig[adapterName];
  if (!config) throw new ConfigError(`setPeftModelStateDict: no adapter named "${adapterName}"`, `adapters: ${Object.keys(model.peftConfig).join(", ")}`);
  const method = methodFor(config.peft_type);
  if (method.family !== "injected-layers") throw new ConfigError(`setPeftModelStateDict supports injected-layers methods; ${config.peft_type} adapters load with loadAdapter`);
  const mapped = mapSavedKeys(model.base_model, method, stateDict, adapterName, `${HOST_NAME}.`);
  const own = model.stateDict();
  const mismatched = [...mapped].filter(([k, t]) => own.has(k) && !sameShape(t.shape, own.get(k)!.shape));
  if (mismatched.length > 0 && !opts.ignoreMismatchedSizes) {
    const list = mismatched.map(([k, t]) => `${k}: ${fmtShape(t.shape)} in the state dict, ${fmtShape(own.get(k)!.shape)} in the model`).join("; ");
    throw new ModelMismatchError(`setPeftModelStateDict: size mismatch for ${list}`, "was the state dict made for another base model or rank? pass ignoreMismatchedSizes to skip these tensors");
  }
  if (mismatched.length > 0) process.emitWarning(`setPeftModelStateDict: tensors of other shapes were skipped: ${mismatched.map(([k]) => k).join(", ")}`);
  const skipped = new Set(mismatched.map(([k]) => k));
  noGrad(() => {
    for (const [k, t] of mapped) if (own.has(k) && !skipped.has(k)) own.get(k)!.copy_(t);
  });
  return {
    missingKeys: [...own.keys()].filter((k) => !mapped.has(k) || skipped.has(k)),
    unexpectedKeys: [...mapped.keys()].filter((k) => !own.has(k)),
  };
}
