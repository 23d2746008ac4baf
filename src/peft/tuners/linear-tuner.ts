/**
 * What FourierFT, VeRA, OFT and BOFT share on top of BaseTuner: target_modules from a per-model-type table when
 * not given ("all-linear" expanded), and their own bias value ("fourier_only", "vera_only", …) meaning the biases
 * of the adapted layers, which BaseTuner calls "lora_only"; and, for FourierFT and VeRA, a layer that adds x·ΔWᵀ
 * on a Linear or GPT-2 Conv1D and merges ΔW in the weight's own layout.
 */
import { Conv1D } from "../../nn/index.js";
import { addInPlace, mul, noGrad, parameter, tidy, transpose, type Tensor } from "../../tensor/index.js";
import { allLinearTargets } from "../targets.js";
import { BaseTuner, type TunerConfig } from "./tuner.js";
import { BaseTunerLayer, type ParameterDict } from "./tuner-layer.js";

/** Put a new trainable `value` under `name` in a parameter dict, disposing what was there. */
export function setAdapterParameter(dict: ParameterDict, name: string, value: Tensor): void {
  const old = dict.ownParameter(name);
  dict.registerParameter(name, parameter(value));
  if (old) old.dispose();
}

/** A layer whose adapters add x·ΔWᵀ (ΔW [out, in]) to a Linear's or Conv1D's output; merging adds ΔW to the weight. */
export abstract class AdditiveLayer extends BaseTunerLayer {
  /** ΔW of one adapter as [out, in]. */
  abstract getDeltaWeight(name: string): Tensor;

  /** Whether the base is GPT-2's Conv1D, whose weight is stored [in, out]. */
  get isTargetConv1dLayer(): boolean {
    return this.base_layer instanceof Conv1D;
  }

  /** ΔW laid out as the stored weight: transposed for Conv1D. */
  private storedDelta(name: string): Tensor {
    const delta = this.getDeltaWeight(name);
    return this.isTargetConv1dLayer ? transpose(delta) : delta;
  }

  protected mergeOne(name: string): void {
    noGrad(() => tidy(() => addInPlace(this.base_layer.getTensor("weight"), this.storedDelta(name))));
  }

  protected unmergeOne(name: string): void {
    noGrad(() => tidy(() => addInPlace(this.base_layer.getTensor("weight"), mul(this.storedDelta(name), -1))));
  }
}

/** An injection method whose config has target_modules and a bias field with its own "<method>_only" value. */
export abstract class LinearTuner<
  C extends TunerConfig & { target_modules: string | string[] | null },
> extends BaseTuner<C> {
  /** The method's name in messages ("FourierFT"). */
  protected abstract readonly methodName: string;
  /** Default target_modules by model_type. */
  protected abstract readonly defaultTargets: Readonly<Record<string, readonly string[]>>;
  /** The bias value that trains the adapted layers' biases ("fourier_only"). */
  protected abstract readonly ownBias: string;

  /** Default targets by model type, "all-linear" expanded. */
  protected prepareConfig(config: C): C {
    const c: C = { ...config };
    const modelType = this.model.config.model_type;
    if (c.target_modules === null) {
      const t = this.defaultTargets[modelType];
      if (!t)
        throw new Error(
          `Please specify \`target_modules\` in \`peft_config\`: ${this.methodName} has no default ` +
            `for model_type "${modelType}"`,
        );
      c.target_modules = [...t];
    }
    if (typeof c.target_modules === "string" && c.target_modules.toLowerCase() === "all-linear")
      c.target_modules = allLinearTargets(this.model, c.task_type);
    return c;
  }

  /** The method's own bias value trains the adapted layers' biases (the generic "lora_only"). */
  protected override markOnlyAdaptersTrainable(config: C): void {
    super.markOnlyAdaptersTrainable(config.bias === this.ownBias ? { ...config, bias: "lora_only" } : config);
  }
}
