/**
 * The host of the parameter-selection methods (BitFit, Freeze): no adapter layers, no prompts — a chosen subset
 * of the model's own parameters is trained in place and everything else is frozen. The saved adapter is those
 * parameters under the model's own key names (`model.layers.1.mlp.up_proj.weight`), so it holds only what was
 * trained. The values before training are kept aside, so that the adapter can be disabled and unloaded.
 */
import { Module } from "../../nn/index.js";
import { contiguous, keep, noGrad, type Tensor } from "../../tensor/index.js";
import type { PreTrainedModel } from "../../models/pretrained.js";
import type { ModelOutput, Seq2SeqInputs } from "../../models/outputs.js";
import { asGenerative, type Generative } from "../../models/generation/index.js";
import { CheckpointError, ConfigError } from "../../errors.js";
import type { PeftConfig } from "../config.js";
import { matchesNames } from "../targets.js";
import type { AdapterCapabilities, AdapterFiles, AdapterHost, Merging, PeftTask, SavedAdapter } from "../contract.js";

/** What a parameter-selection method supplies: its config check and which of the model's parameters it trains. */
export interface ParameterSelection<C extends PeftConfig> {
  /** Build a complete, checked config from a plain object (one made in code without the method's builder). */
  complete(fields: C): C;
  /** The names (as in the model's state dict) of the parameters to train; throws a ConfigError when none fit. */
  select(model: PreTrainedModel, config: C): string[];
}

/** The host of one parameter-selection adapter: the chosen parameters train in place, the rest is frozen. */
export class SelectionHost<C extends PeftConfig> extends Module implements AdapterHost, Merging {
  readonly family = "injected-layers";
  readonly model: PreTrainedModel;
  readonly peftConfig = new Map<string, C>();
  activeAdapters: string[] = [];
  /** The trained values are the model's own weights, so the adapter is always merged. */
  readonly capabilities: AdapterCapabilities = { merge: this, weightedCombination: null, optimizerStepHook: null };
  /** Trained parameters by name. */
  private readonly trained = new Map<string, Tensor>();
  /** The values the trained parameters do not hold now: the originals while enabled, the trained ones while disabled. */
  private readonly aside = new Map<string, Tensor>();
  private disabled = false;

  constructor(
    model: PreTrainedModel,
    private readonly selection: ParameterSelection<C>,
  ) {
    super();
    this.model = this.registerModule("model", model);
  }

  /** Choose and unfreeze the parameters of the (only) adapter; every other parameter is frozen. */
  injectAdapter(fields: C, adapterName: string): C {
    const config = this.selection.complete(fields);
    if (this.peftConfig.size > 0) {
      throw new ConfigError(
        `${config.peft_type} trains the model's own parameters in place, so a model holds one such ` +
          `adapter; "${[...this.peftConfig.keys()][0]}" is already there`,
        "load the adapter into a fresh copy of the base model",
      );
    }
    const names = this.selection.select(this.model, config);
    const params = new Map(this.model.namedParameters());
    for (const p of params.values()) p.requiresGrad = false;
    for (const name of names) {
      const p = params.get(name)!;
      p.requiresGrad = !config.inference_mode;
      this.trained.set(name, p);
      this.aside.set(name, keep(noGrad(() => contiguous(p, true))));
    }
    this.peftConfig.set(adapterName, config);
    this.activeAdapters = [adapterName];
    return config;
  }

  /** The one adapter is always the active one. */
  setAdapter(names: string | string[]): void {
    const list = typeof names === "string" ? [names] : names;
    const known = [...this.peftConfig.keys()];
    if (list.length !== 1 || list[0] !== known[0])
      throw new Error(`this model holds one adapter, "${known[0]}"; cannot activate ${list.join(", ")}`);
  }

  /** Deleting puts the original values back and leaves no adapter. */
  deleteAdapter(name: string): void {
    if (!this.peftConfig.has(name)) throw new Error(`adapter "${name}" does not exist`);
    this.unload();
    this.peftConfig.delete(name);
    this.activeAdapters = [];
  }

  /** Swap the original values in (true) or the trained ones back (false). */
  setAdaptersDisabled(disabled: boolean): void {
    if (disabled === this.disabled) return;
    noGrad(() => {
      for (const [name, p] of this.trained) {
        const other = this.aside.get(name)!;
        const current = contiguous(p, true);
        p.copy_(other);
        other.copy_(current);
        current.dispose();
      }
    });
    this.disabled = disabled;
  }

  /** The trained parameters. */
  adapterParameters(adapterName: string): Tensor[] {
    return this.peftConfig.has(adapterName) ? [...this.trained.values()] : [];
  }

  /** The model runs as it is: the trained parameters are its own. */
  forwardTask(_task: PeftTask, inputs: Seq2SeqInputs): ModelOutput {
    return this.model.forward(inputs) as ModelOutput;
  }

  /** The model generates as it is. */
  generative(): Generative {
    return asGenerative(this.model);
  }

  /** Nothing to fold in: the trained values already are the weights. */
  merge(): void {}

  /** Nothing was folded in; unload() restores the original values. */
  unmerge(): void {}

  /** The model with the trained values (enabled again if it was disabled); the host lets go of the originals. */
  mergeAndUnload(): PreTrainedModel {
    this.setAdaptersDisabled(false);
    this.forget();
    return this.model;
  }

  /** The model with its original values back. */
  unload(): PreTrainedModel {
    this.setAdaptersDisabled(true);
    this.forget();
    return this.model;
  }

  private forget(): void {
    for (const t of this.aside.values()) t.dispose();
    this.aside.clear();
    this.trained.clear();
    this.disabled = false;
  }

  /** Save hook: the trained parameters (their trained values, even while disabled) under the model's key names. */
  saveAdapter(adapterName: string): SavedAdapter {
    if (!this.peftConfig.has(adapterName)) throw new Error(`adapter "${adapterName}" not found`);
    const tensors = new Map<string, Tensor>();
    for (const [name, p] of this.trained)
      tensors.set(
        name,
        noGrad(() => contiguous(this.disabled ? this.aside.get(name)! : p, true)),
      );
    return { tensors, sideFiles: new Map() };
  }

  /** Load hook: the file must hold exactly the parameters this config selects, with their shapes. */
  loadAdapter(adapterName: string, files: AdapterFiles): void {
    const type = this.peftConfig.get(adapterName)?.peft_type;
    const unexpected = [...files.tensors.keys()].filter((k) => !this.trained.has(k));
    const missing = [...this.trained.keys()].filter((k) => !files.tensors.has(k));
    if (unexpected.length > 0 || missing.length > 0) {
      const list = (ks: string[]) => (ks.length ? ks.slice(0, 3).join(", ") + (ks.length > 3 ? ", …" : "") : "none");
      throw new CheckpointError(
        `${files.where}: the ${type} config selects other parameters than the file holds ` +
          `(unexpected: ${list(unexpected)}; missing: ${list(missing)})`,
        "load it with the adapter_config.json saved beside it, on the base model it was trained from",
      );
    }
    noGrad(() => {
      for (const [name, p] of this.trained) {
        const t = files.tensors.get(name)!;
        if (t.shape.join(",") !== p.shape.join(",")) {
          throw new CheckpointError(
            `${files.where}: ${name} has shape [${t.shape.join(", ")}] but the model's is [${p.shape.join(", ")}]`,
            "use the base model the adapter was trained from",
          );
        }
        (this.disabled ? this.aside.get(name)! : p).copy_(contiguous(t));
      }
    });
  }
}

/** The state-dict names of every parameter of the modules whose paths match `spec` (peft's matching: list suffix or full-match regex). */
export function parametersOfModules(model: PreTrainedModel, spec: string | readonly string[]): string[] {
  const out = new Set<string>();
  for (const [path, module] of model.namedModules()) {
    if (path === "" || !matchesNames(spec, path)) continue;
    for (const [name] of module.namedParameters()) out.add(`${path}.${name}`);
  }
  return [...out];
}

/** Keep the names that are (deduplicated) parameters of the model: a tied weight counts under its first name. */
export function ownParameterNames(model: PreTrainedModel, names: Iterable<string>): string[] {
  const wanted = new Set(names);
  return model
    .namedParameters()
    .map(([n]) => n)
    .filter((n) => wanted.has(n));
}

/** A registry createHost for a parameter-selection method. */
export function selectionHostFactory<C extends PeftConfig>(
  selection: ParameterSelection<C>,
): (model: PreTrainedModel, config: C, adapterName: string) => AdapterHost {
  return (model, config, adapterName) => {
    const host = new SelectionHost(model, selection);
    host.injectAdapter(config, adapterName);
    return host;
  };
}
