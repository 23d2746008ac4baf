/**
 * XLoraModel (peft 0.15.2): LoRA experts (loaded from config.adapters, named "0", "1", …, frozen unless
 * use_trainable_adapters) under a classifier that mixes them per token. Each forward is two passes, as peft's hooks
 * do: a no-grad scaling pass where every expert gets scaling_pass_value, whose last hidden state feeds the
 * classifier, then the real pass with the classifier's scalings. Saved: only the classifier
 * (`base_model.internal_xlora_classifier.*`); the experts stay in their own folders.
 */
import { join } from "node:path";
import { CheckpointError, ConfigError } from "../../../errors.js";
import { readJsonObject } from "../../../io/json.js";
import { loadSafetensors } from "../../../io/safetensors.js";
import type { BaseModelOutput, ModelOutput, Seq2SeqInputs } from "../../../models/outputs.js";
import { withForward, type Generative } from "../../../models/generation/index.js";
import { isGradEnabled, noGrad, type Tensor } from "../../../tensor/index.js";
import { HOST_NAME, type AdapterCapabilities, type AdapterFiles, type SavedAdapter } from "../../contract.js";
import { PeftType } from "../../config.js";
import { configFromJson } from "../../registry.js";
import { LoraModel } from "../lora/model.js";
import { LoraLinear } from "../lora/layer.js";
import type { LoraConfig } from "../lora/config.js";
import type { XLoraConfig } from "./config.js";
import { XLoraClassifier, xloraLinearForward } from "./layer.js";

const CLASSIFIER = "internal_xlora_classifier";

/** X-LoRA injected into a model. */
export class XLoraModel extends LoraModel {
  override readonly capabilities: AdapterCapabilities = {
    merge: null,
    weightedCombination: null,
    optimizerStepHook: null,
  };
  internal_xlora_classifier: XLoraClassifier | null = null;
  private xloraName: string | null = null;
  /** The scalings the LoRA layers use in the pass under way (null: every expert at weight 1, peft's disabled state). */
  private scalings: Tensor | null = null;
  private disabled = false;

  /** The X-LoRA config: load its experts, route the LoRA layers through X-LoRA, build the classifier. */
  override injectAdapter(config: LoraConfig, adapterName: string): LoraConfig {
    if (config.peft_type !== PeftType.XLORA) return super.injectAdapter(config, adapterName);
    if (this.xloraName !== null)
      throw new ConfigError(
        `this model already has the X-LoRA adapter "${this.xloraName}"`,
        "use one X-LoRA adapter per model",
      );
    const xc = config as unknown as XLoraConfig;
    const modelHidden = this.model.config["hidden_size"] ?? this.model.config["n_embd"] ?? this.model.config["d_model"];
    if (typeof modelHidden === "number" && modelHidden !== xc.hidden_size) {
      throw new ConfigError(
        `X-LoRA hidden_size is ${xc.hidden_size} but the model's hidden size is ${modelHidden}`,
        `set hidden_size to ${modelHidden}`,
      );
    }
    const experts = Object.entries(xc.adapters ?? {});
    if (experts.length === 0)
      throw new ConfigError(
        "X-LoRA needs LoRA experts: `adapters` is empty",
        'set adapters to {"0": "path/to/lora", …}',
      );
    experts.forEach(([, dir], i) => {
      this.loadExpert(dir, String(i), xc.use_trainable_adapters);
    });
    // By position, as peft loads them. (peft then activates the `adapters` keys themselves, so with keys other than
    // "0", "1", … its experts silently stay unused; here they are always mixed.)
    super.setAdapter(experts.map((_, i) => String(i)));
    const layers = this.expertLayers();
    layers.forEach((layer, number) => {
      layer.forward = (x: Tensor) => xloraLinearForward(layer, x, this.disabled ? null : this.scalings, number, xc);
    });
    this.internal_xlora_classifier = this.registerModule(
      CLASSIFIER,
      new XLoraClassifier(xc, experts.length, layers.length),
    );
    if (xc.inference_mode) for (const p of this.internal_xlora_classifier.parameters()) p.requiresGrad = false;
    this.peftConfig.set(adapterName, config);
    this.xloraName = adapterName;
    return config;
  }

  /** One LoRA expert from its folder (peft's _load_adapter_into_lora_model). */
  private loadExpert(dir: string, name: string, trainable: boolean): void {
    const config = configFromJson(readJsonObject(join(dir, "adapter_config.json")));
    if (config.peft_type !== PeftType.LORA)
      throw new ConfigError(
        `X-LoRA expert ${dir} is a ${config.peft_type} adapter`,
        "X-LoRA experts must be LoRA adapters",
      );
    const lora = config as LoraConfig;
    if (lora.use_dora)
      throw new ConfigError(
        `X-LoRA expert ${dir} uses DoRA`,
        "X-LoRA currently does not support LoRA layers with DoRA (as in peft); use plain LoRA experts",
      );
    lora.inference_mode = !trainable;
    super.injectAdapter(lora, name);
    const file = join(dir, "adapter_model.safetensors");
    const tensors = loadSafetensors(file);
    try {
      super.loadAdapter(name, { tensors, sideFile: () => null, where: file });
    } finally {
      for (const t of tensors.values()) t.dispose();
    }
  }

  /** The LoRA layers in module order (peft numbers them so), each holding every expert. */
  private expertLayers(): LoraLinear[] {
    const layers = this.tunerLayers();
    const experts = [...this.peftConfig.keys()];
    for (const [key, layer] of layers) {
      if (!(layer instanceof LoraLinear))
        throw new ConfigError(
          `X-LoRA expert layer ${key} is a ${layer.moduleType()}`,
          "X-LoRA mixes LoRA Linear layers only",
        );
      const missing = experts.filter((e) => !layer.hasAdapter(e));
      // peft 0.15.2 fails there with a KeyError in its X-LoRA layer.
      if (missing.length > 0)
        throw new ConfigError(
          `X-LoRA expert(s) ${missing.join(", ")} do not adapt ${key}, which other experts adapt`,
          "give every expert the same target_modules",
        );
    }
    return layers.map(([, l]) => l as LoraLinear);
  }

  /** peft's disable: the scaling pass is skipped and every expert adds its full output. */
  override setAdaptersDisabled(disabled: boolean): void {
    this.disabled = disabled;
  }

  /** The scalings of the last forward ([batch, length, nLayers, nExperts]; peft's get_latest_scalings). */
  latestScalings(): Tensor | null {
    return this.scalings;
  }

  /**
   * Scaling pass, classifier, real pass. With
   * useCache, each pass keeps its own cache: the returned pastKeyValues are the real pass's layers followed by the
   * scaling pass's, and a pastKeyValues given back is split the same way. Every token's scalings depend on earlier
   * tokens only, so this gives what peft's cache-less generation gives.
   */
  override forward(inputs: Seq2SeqInputs): ModelOutput | BaseModelOutput {
    const classifier = this.internal_xlora_classifier;
    if (!classifier || this.disabled) return this.model.forward(inputs);
    if (this.model.isEncoderDecoder)
      throw new ConfigError("X-LoRA on encoder-decoder models is not supported here", "use a decoder-only model");
    // A checkpointed layer gets gradients only for its input and its own parameters; the scalings come from outside.
    if (this.model.isGradientCheckpointing && this.model.training && isGradEnabled()) {
      throw new ConfigError(
        "X-LoRA cannot train with gradient checkpointing: the classifier's scalings reach every " +
          "layer from outside it, so a recomputed layer would pass them no gradient",
        "turn gradient_checkpointing off for X-LoRA",
      );
    }
    const shape = (inputs.inputIds ?? inputs.inputsEmbeds)!.shape;
    const past = inputs.pastKeyValues;
    const half = past ? past.length / 2 : 0;
    const { labels: _labels, ...unlabelled } = inputs;
    const scalingPass = noGrad(() => {
      this.scalings = classifier.dummyScalings(shape[0]!, shape[1]!);
      return this.model.forward({
        ...unlabelled,
        ...(past ? { pastKeyValues: past.slice(half) } : {}),
        outputHiddenStates: true,
      });
    });
    this.scalings = classifier.forward(scalingPass.hiddenStates![scalingPass.hiddenStates!.length - 1]!);
    const out = this.model.forward({ ...inputs, ...(past ? { pastKeyValues: past.slice(0, half) } : {}) });
    if (!inputs.useCache) return out;
    return { ...out, pastKeyValues: [...out.pastKeyValues!, ...scalingPass.pastKeyValues!] };
  }

  /** The model generates through this host, so that every step runs the scaling pass. */
  override generative(): Generative {
    return withForward(super.generative(), (inputs) => this.forward(inputs) as ModelOutput);
  }

  /** Save hook: the classifier's tensors under peft's names. */
  override saveAdapter(adapterName: string): SavedAdapter {
    if (adapterName !== this.xloraName) return super.saveAdapter(adapterName);
    const tensors = new Map(
      this.internal_xlora_classifier!.namedParameters().map(
        ([k, t]) => [`${HOST_NAME}.${CLASSIFIER}.${k}`, t] as const,
      ),
    );
    return { tensors, sideFiles: new Map() };
  }

  /** Load hook: the classifier's tensors, every one required. */
  override loadAdapter(adapterName: string, files: AdapterFiles): void {
    if (adapterName !== this.xloraName) return super.loadAdapter(adapterName, files);
    const params: [string, Tensor][] = this.internal_xlora_classifier!.namedParameters().map(([k, t]) => [
      `${HOST_NAME}.${CLASSIFIER}.${k}`,
      t,
    ]);
    const expected = new Set(params.map(([k]) => k));
    const unexpected = [...files.tensors.keys()].filter((k) => !expected.has(k));
    const missing = [...expected].filter((k) => !files.tensors.has(k));
    if (missing.length > 0 || unexpected.length > 0) {
      throw new CheckpointError(
        `${files.where}: the X-LoRA classifier does not match the config (missing: ` +
          `${missing.join(", ") || "none"}; unexpected: ${unexpected.join(", ") || "none"})`,
        "check xlora_depth, xlora_dropout_p, layerwise_scalings and the experts against the saved adapter",
      );
    }
    noGrad(() => {
      for (const [k, p] of params) {
        const t = files.tensors.get(k)!;
        if (t.shape.join() !== p.shape.join())
          throw new CheckpointError(
            `${files.where}: ${k} has shape [${t.shape}] but the classifier expects [${p.shape}]`,
            "check hidden_size, xlora_size and the number of experts",
          );
        p.copy_(t);
      }
    });
  }
}
