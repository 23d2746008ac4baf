/**
 * What FourierFT, VeRA, OFT and BOFT share on top of BaseTuner: target_modules from a per-model-type table when
 * not given ("all-linear" expanded), and their own bias value ("fourier_only", "vera_only", …) meaning the biases
 * of the adapted layers, which BaseTuner calls "lora_only".
 */
import { allLinearTargets } from "../targets.js";
import { BaseTuner, type TunerConfig } from "./tuner.js";

/** An injection method whose config has target_modules and a bias field with its own "<method>_only" value. */
export abstract class LinearTuner<C extends TunerConfig & { target_modules: string | string[] | null }> extends BaseTuner<C> {
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
      if (!t) throw new Error(`Please specify \`target_modules\` in \`peft_config\`: ${this.methodName} has no default for model_type "${modelType}"`);
      c.target_modules = [...t];
    }
    if (typeof c.target_modules === "string" && c.target_modules.toLowerCase() === "all-linear") c.target_modules = allLinearTargets(this.model, c.task_type);
    return c;
  }

  /** The method's own bias value trains the adapted layers' biases (the generic "lora_only"). */
  protected override markOnlyAdaptersTrainable(config: C): void {
    super.markOnlyAdaptersTrainable(config.bias === this.ownBias ? { ...config, bias: "lora_only" } : config);
  }
}
