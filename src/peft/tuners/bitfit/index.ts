/**
 * BitFit: only biases train. The saved adapter_model.safetensors holds the trained biases (and modules_to_save
 * weights) under the model's own key names, beside an adapter_config.json with peft_type "BITFIT".
 */
import { ConfigError } from "../../../errors.js";
import type { PreTrainedModel } from "../../../models/pretrained.js";
import { PeftType } from "../../config.js";
import { registerMethod } from "../../registry.js";
import { checkTarget } from "../../targets.js";
import { selectionHostFactory, ownParameterNames, parametersOfModules, type ParameterSelection } from "../selection.js";
import { makeBitFitConfig, type BitFitConfig } from "./config.js";

export { BitFitConfig, BITFIT_FIELDS } from "./config.js";

/** The biases BitFit trains: those of the target modules (every module when target_modules is null), minus the excluded ones. */
export function bitFitParameters(model: PreTrainedModel, config: BitFitConfig): string[] {
  const biases: string[] = [];
  for (const [path, module] of model.namedModules()) {
    if (!module.ownParameter("bias")) continue;
    const hit =
      config.target_modules === null
        ? !(config.exclude_modules && checkTarget(config, path) === "excluded")
        : checkTarget(config, path) === true;
    if (hit) biases.push(path === "" ? "bias" : `${path}.bias`);
  }
  if (biases.length === 0) {
    const which =
      config.target_modules === null
        ? "the model"
        : `the modules matching target_modules ${JSON.stringify(config.target_modules)}`;
    throw new ConfigError(
      `BITFIT: ${which} ha${config.target_modules === null ? "s" : "ve"} no bias to train`,
      "target modules that have a bias (LLaMA-style models have none; GPT-2, BERT and Qwen2's q/k/v do)",
    );
  }
  return ownParameterNames(model, [...biases, ...parametersOfModules(model, config.modules_to_save ?? [])]);
}

const BITFIT: ParameterSelection<BitFitConfig> = {
  complete: (c) => makeBitFitConfig(c, false),
  select: bitFitParameters,
};

registerMethod<BitFitConfig>({
  peftType: PeftType.BITFIT,
  prefix: "bias",
  configFromJson: makeBitFitConfig,
  family: "injected-layers",
  createHost: selectionHostFactory(BITFIT),
});
