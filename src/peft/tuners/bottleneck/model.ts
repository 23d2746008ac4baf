/**
 * BottleneckModel, the host of bottleneck adapters (AdapterHub's SeqBn / DoubleSeqBn): adapters are added to every
 * layer of the model's layer list but those in leave_out, the model's own weights are frozen, and the saved
 * tensors carry AdapterHub's names (`transformer.h.0.output_adapters.adapters.<name>.adapter_up.weight`).
 * A model holds one bottleneck adapter. Adapters are non-linear, so nothing merges into the weights.
 */
import { Module, type TensorLayer } from "../../../nn/index.js";
import { contiguous, noGrad, type Tensor } from "../../../tensor/index.js";
import type { PreTrainedModel } from "../../../models/pretrained.js";
import type { ModelOutput, Seq2SeqInputs } from "../../../models/outputs.js";
import { asGenerative, type Generative } from "../../../models/generation/index.js";
import { CheckpointError, ConfigError } from "../../../errors.js";
import type { AdapterCapabilities, AdapterFiles, AdapterHost, PeftTask, SavedAdapter } from "../../contract.js";
import { layerLists } from "../../layer-lists.js";
import { makeBottleneckConfig, type BottleneckConfig } from "./config.js";
import {
  BottleneckAdapter,
  BottleneckSite,
  LayerOutputWithAdapters,
  SublayerOutputWithAdapters,
  type DecoderLayer,
} from "./layer.js";

/** Where each family's attention and feed-forward blocks end (their output projections), relative to a layer. */
const ATTENTION_OUTPUT = ["attn.c_proj", "self_attn.o_proj", "self_attention.dense", "attention.dense"];
const FEEDFORWARD_OUTPUT = ["mlp.c_proj", "mlp.down_proj", "mlp.dense_4h_to_h"];

/** Bottleneck adapters in a model. */
export class BottleneckModel extends Module implements AdapterHost {
  readonly family = "injected-layers";
  readonly model: PreTrainedModel;
  readonly peftConfig = new Map<string, BottleneckConfig>();
  activeAdapters: string[] = [];
  readonly capabilities: AdapterCapabilities = { merge: null, weightedCombination: null, optimizerStepHook: null };
  /** The sites holding the adapter, and how to take each wrapper back out (unload). */
  private readonly sites: BottleneckSite[] = [];
  private readonly undo: (() => void)[] = [];

  constructor(model: PreTrainedModel) {
    super();
    this.model = this.registerModule("model", model);
  }

  /** Add the adapter to every layer but those in leave_out; freeze the model's own weights. */
  injectAdapter(fields: BottleneckConfig, adapterName: string): BottleneckConfig {
    const config = makeBottleneckConfig(fields, false);
    if (this.peftConfig.size > 0)
      throw new ConfigError(
        `this model already holds the bottleneck adapter "${[...this.peftConfig.keys()][0]}"; a model holds one`,
        "load the other adapter into a fresh copy of the base model",
      );
    const lists = [...layerLists(this.model, null)];
    if (lists.length !== 1)
      throw new ConfigError(
        `BOTTLENECK: expected one list of decoder layers, found ` +
          `${lists.length === 0 ? "none" : lists.map(([l]) => l).join(", ")}`,
        "use a decoder-only model (GPT-2, LLaMA-style)",
      );
    const hidden = Number(this.model.config["hidden_size"] ?? this.model.config["n_embd"]);
    if (!Number.isInteger(hidden) || hidden <= 0)
      throw new ConfigError(
        "BOTTLENECK: the model config has no hidden_size (or n_embd)",
        "use a decoder-only model (GPT-2, LLaMA-style)",
      );
    for (const p of this.model.parameters()) p.requiresGrad = false;
    lists[0]![1].forEach((path, i) => {
      if (config.leave_out.includes(i)) return;
      const rf =
        typeof config.reduction_factor === "number"
          ? config.reduction_factor
          : (config.reduction_factor[String(i)] ?? config.reduction_factor["default"]!);
      const make = () =>
        this.newSite(
          adapterName,
          new BottleneckAdapter(
            hidden,
            Math.max(1, Math.floor(hidden / rf)),
            config.non_linearity,
            config.init_weights,
            config.scaling as number,
            config.dropout,
          ),
        );
      if (config.original_ln_before) this.wrapLayer(path, make());
      else {
        if (config.mh_adapter) this.wrapSublayerOutput(path, ATTENTION_OUTPUT, "attention_adapters", make());
        if (config.output_adapter) this.wrapSublayerOutput(path, FEEDFORWARD_OUTPUT, "output_adapters", make());
      }
    });
    if (config.inference_mode) for (const p of this.adapterParameters(adapterName)) p.requiresGrad = false;
    this.peftConfig.set(adapterName, config);
    this.activeAdapters = [adapterName];
    return config;
  }

  private newSite(adapterName: string, adapter: BottleneckAdapter): BottleneckSite {
    const site = new BottleneckSite();
    site.adapters.set(adapterName, adapter);
    site.activeAdapters = [adapterName];
    this.sites.push(site);
    return site;
  }

  /** Pfeiffer: the layer at `path` is wrapped, its output adapter registered on the wrapper as `output_adapters`. */
  private wrapLayer(path: string, site: BottleneckSite): void {
    const layer = this.model.getSubmodule(path) as DecoderLayer;
    const wrapper = new LayerOutputWithAdapters(layer, site);
    wrapper.registerModule("output_adapters", site);
    this.model.setSubmodule(path, wrapper);
    this.undo.push(() => this.model.setSubmodule(path, layer));
  }

  /** Houlsby: the sublayer output projection under `layerPath` is wrapped; the site is registered on the layer as `siteName`. */
  private wrapSublayerOutput(
    layerPath: string,
    candidates: readonly string[],
    siteName: string,
    site: BottleneckSite,
  ): void {
    const layer = this.model.getSubmodule(layerPath);
    const names = new Set(layer.namedModules().map(([n]) => n));
    const rel = candidates.find((c) => names.has(c));
    if (!rel)
      throw new ConfigError(
        `BOTTLENECK: ${layerPath} has none of ${candidates.join(", ")}; this model family is not supported`,
        "use GPT-2 or a LLaMA-style model",
      );
    const projection = layer.getSubmodule(rel) as TensorLayer;
    layer.registerModule(siteName, site);
    layer.setSubmodule(rel, new SublayerOutputWithAdapters(projection, site));
    this.undo.push(() => {
      layer.setSubmodule(rel, projection);
      layer.removeModule(siteName);
    });
  }

  /** The one adapter is always the active one. */
  setAdapter(names: string | string[]): void {
    const list = typeof names === "string" ? [names] : names;
    if (list.length !== 1 || !this.peftConfig.has(list[0]!))
      throw new Error(
        `this model holds one bottleneck adapter, "${[...this.peftConfig.keys()][0]}"; cannot ` +
          `activate ${list.join(", ")}`,
      );
  }

  /** Remove the adapter: the model goes back to its own layers. */
  deleteAdapter(name: string): void {
    if (!this.peftConfig.has(name)) throw new Error(`adapter "${name}" does not exist`);
    this.unload();
    for (const site of this.sites.splice(0)) site.dispose();
    this.peftConfig.delete(name);
    this.activeAdapters = [];
  }

  /** Switch the adapters off (true) or back on (false). */
  setAdaptersDisabled(disabled: boolean): void {
    for (const site of this.sites) site.disabled = disabled;
  }

  /** The adapter's parameters. */
  adapterParameters(adapterName: string): Tensor[] {
    return this.sites.flatMap((s) => (s.adapters.has(adapterName) ? s.adapters.get(adapterName).parameters() : []));
  }

  /** The model's forward: the adapters act inside it. */
  forwardTask(_task: PeftTask, inputs: Seq2SeqInputs): ModelOutput {
    return this.model.forward(inputs) as ModelOutput;
  }

  /** The model generates with the adapters in place. */
  generative(): Generative {
    return asGenerative(this.model);
  }

  /** Take every wrapper back out; returns the plain model. */
  unload(): PreTrainedModel {
    for (const undo of this.undo.splice(0).reverse()) undo();
    return this.model;
  }

  /** The adapter's parameters by their names in the model, which are AdapterHub's key names. */
  private namedAdapterParameters(adapterName: string): [string, Tensor][] {
    const marker = `_adapters.adapters.${adapterName}.`;
    return this.model.namedParameters().filter(([n]) => n.includes(marker));
  }

  /** Save hook: the adapter's tensors under AdapterHub's names. */
  saveAdapter(adapterName: string): SavedAdapter {
    if (!this.peftConfig.has(adapterName)) throw new Error(`adapter "${adapterName}" not found`);
    return {
      tensors: new Map(
        this.namedAdapterParameters(adapterName).map(([n, p]) => [n, noGrad(() => contiguous(p, true))]),
      ),
      sideFiles: new Map(),
    };
  }

  /** Load hook: the file must hold exactly this adapter's tensors, with their shapes. */
  loadAdapter(adapterName: string, files: AdapterFiles): void {
    const own = new Map(this.namedAdapterParameters(adapterName));
    const unexpected = [...files.tensors.keys()].filter((k) => !own.has(k));
    const missing = [...own.keys()].filter((k) => !files.tensors.has(k));
    if (unexpected.length > 0 || missing.length > 0) {
      throw new CheckpointError(
        `${files.where}: the file does not fit this bottleneck adapter (unexpected: ` +
          `${unexpected.slice(0, 3).join(", ") || "none"}; missing: ` +
          `${missing.slice(0, 3).join(", ") || "none"})`,
        "load it with the adapter_config.json saved beside it, on the base model it was trained from",
      );
    }
    noGrad(() => {
      for (const [name, p] of own) {
        const t = files.tensors.get(name)!;
        if (t.shape.join(",") !== p.shape.join(","))
          throw new CheckpointError(
            `${files.where}: ${name} has shape [${t.shape.join(", ")}], the adapter's is [${p.shape.join(", ")}]`,
            "use the config saved with it",
          );
        p.copy_(contiguous(t));
      }
    });
  }
}
