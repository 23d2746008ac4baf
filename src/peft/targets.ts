/**
 * Which modules a PEFT method wraps: HF peft's check_target_module_exists (a list matches a module name exactly
 * or as a "."-suffix, a string is a full-match regex; exclude_modules first; layers_to_transform with
 * layers_pattern), "all-linear", the default target tables, and errors that list what the model has.
 */
import { Conv1D, Linear, QuantizedLinear, type Module } from "../nn/index.js";
import type { PreTrainedModel } from "../models/pretrained.js";
import { BaseTunerLayer } from "./tuners/tuner-layer.js";
import { ModulesToSaveWrapper } from "./modules-to-save.js";

/** The config fields that steer matching (LoRA-like methods). */
export interface TargetFields {
  target_modules: string | string[] | null;
  exclude_modules?: string | string[] | null;
  layers_to_transform?: number | number[] | null;
  layers_pattern?: string | string[] | null;
}

/** Python's re.fullmatch for a pattern string. */
function fullMatch(pattern: string, key: string): boolean {
  return new RegExp(`^(?:${pattern})$`).test(key);
}

/** Whether `key` matches a list (exact or "."-suffix) or a regex string. */
export function matchesNames(spec: string | readonly string[], key: string): boolean {
  if (typeof spec === "string") return fullMatch(spec, key);
  return spec.includes(key) || spec.some((t) => key.endsWith(`.${t}`));
}

/** The layer index in a module path, found with layers_pattern (any "<name>.<index>." when empty). */
function layerIndex(key: string, pattern: string | readonly string[] | null | undefined): number | null {
  const patterns =
    pattern === null || pattern === undefined || pattern.length === 0
      ? ["[^.]*"]
      : typeof pattern === "string"
        ? [pattern]
        : pattern;
  for (const p of patterns) {
    const m = new RegExp(`^.*\\.${p}\\.(\\d+)\\.`).exec(key);
    if (m) return Number(m[1]);
  }
  return null;
}

/** "excluded", true (wrap it) or false for one module path. */
export function checkTarget(fields: TargetFields, key: string): boolean | "excluded" {
  if (fields.exclude_modules && matchesNames(fields.exclude_modules, key)) return "excluded";
  const targets = fields.target_modules;
  if (targets === null) return false;
  if (typeof targets === "string") return fullMatch(targets, key);
  if (targets.includes(key)) return true;
  if (!targets.some((t) => key.endsWith(`.${t}`))) return false;
  const layers = fields.layers_to_transform;
  if (layers === null || layers === undefined || (Array.isArray(layers) && layers.length === 0)) return true;
  const idx = layerIndex(key, fields.layers_pattern);
  if (idx === null) return false;
  return typeof layers === "number" ? idx === layers : layers.includes(idx);
}

/**
 * Module paths of the model's linear layers (Linear and GPT-2's Conv1D). A linear layer that already carries
 * adapters counts under its own path; the insides of adapter layers (base_layer, lora_A.<name>, …) and of
 * modules_to_save wrappers are not the model's layers and are left out.
 */
export function linearModuleNames(model: Module): string[] {
  const names: string[] = [];
  const inside: string[] = [];
  const isLinear = (m: Module) => m instanceof Linear || m instanceof Conv1D || m instanceof QuantizedLinear;
  for (const [n, m] of model.namedModules()) {
    if (inside.some((p) => n.startsWith(p))) continue;
    if (m instanceof BaseTunerLayer || m instanceof ModulesToSaveWrapper) {
      inside.push(`${n}.`);
      if (m instanceof BaseTunerLayer && isLinear(m.base_layer)) names.push(n);
    } else if (isLinear(m)) {
      names.push(n);
    }
  }
  return names;
}

/**
 * HF's "all-linear": every linear layer's full path except the output head (the LM head, or for sequence
 * classification the score/classifier head).
 */
export function allLinearTargets(model: PreTrainedModel, taskType: string | null): string[] {
  const exclude = new Set<string>();
  const output = model.getOutputEmbeddings();
  if (output) for (const [n, m] of model.namedModules()) if (m === output) exclude.add(n);
  if (!output && taskType === "SEQ_CLS")
    for (const head of ["score", "classifier"]) if (model.namedChildren().some(([n]) => n === head)) exclude.add(head);
  return linearModuleNames(model).filter((n) => !exclude.has(n));
}

/** The default target_modules of a method for a model type, or an error asking for target_modules. */
export function defaultTargets(table: Record<string, string[]>, modelType: string, method: string): string[] {
  const t = table[modelType];
  if (!t) {
    throw new Error(
      `Please specify \`target_modules\` in the ${method} config: there is no default for model_type "${modelType}"`,
    );
  }
  return [...t];
}

/**
 * Throw when nothing matched, or when an entry of a target list matched no module, naming the entries and
 * listing the model's linear modules. `excluded` are the module paths that exclude_modules removed: an entry
 * that only matched excluded modules was found (it is what "all-linear" plus exclude_modules gives).
 */
export function checkAllTargetsFound(
  fields: TargetFields,
  matched: readonly string[],
  model: Module,
  excluded: readonly string[] = [],
): void {
  const targets = fields.target_modules;
  const hint = () => {
    const names = linearModuleNames(model);
    const shortNames = [...new Set(names.map((n) => n.split(".").pop()!))];
    return `The model's linear modules are named ${shortNames.join(", ")} (e.g. ${names.slice(0, 3).join(", ")})`;
  };
  if (matched.length === 0) {
    const wouldMatch = excluded.filter((k) => checkTarget({ ...fields, exclude_modules: null }, k) === true);
    if (wouldMatch.length > 0) {
      throw new Error(
        `All modules were excluded: exclude_modules ${JSON.stringify(fields.exclude_modules)} ` +
          `removed every module that target_modules ${JSON.stringify(targets)} selects ` +
          `(${wouldMatch.slice(0, 3).join(", ")}${wouldMatch.length > 3 ? ", …" : ""}). This is ` +
          `likely unintended; check target_modules and exclude_modules.`,
      );
    }
    throw new Error(
      `Target modules ${JSON.stringify(targets)} not found in the base model. ${hint()}. Please ` +
        `check the target modules and try again.`,
    );
  }
  if (Array.isArray(targets) && !(fields.layers_to_transform !== null && fields.layers_to_transform !== undefined)) {
    const found = [...matched, ...excluded];
    const missing = targets.filter((t) => !found.some((k) => k === t || k.endsWith(`.${t}`)));
    if (missing.length > 0) {
      throw new Error(`Target module(s) ${JSON.stringify(missing)} matched no module of the base model. ${hint()}.`);
    }
  }
}

/** HF's get_pattern_key: the rank_pattern/alpha_pattern key matching a module path, if any. */
export function patternKey(keys: readonly string[], modulePath: string): string | null {
  return keys.find((k) => new RegExp(`^(.*\\.)?(${k})$`).test(modulePath)) ?? null;
}
