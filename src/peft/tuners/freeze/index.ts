/**
 * Freeze tuning: the top layers and named modules train in place. The saved adapter_model.safetensors holds
 * their parameters under the model's own key names, beside an adapter_config.json with peft_type "FREEZE".
 */
import { ConfigError } from "../../../errors.js";
import type { PreTrainedModel } from "../../../models/pretrained.js";
import { PeftType } from "../../config.js";
import { registerMethod } from "../../registry.js";
import { LAYER_LIST_NAMES, layerLists } from "../../layer-lists.js";
import { ownParameterNames, parametersOfModules, selectionHostFactory, type ParameterSelection } from "../selection.js";
import { makeFreezeConfig, type FreezeConfig } from "./config.js";

export { FreezeConfig, FREEZE_FIELDS } from "./config.js";

/** The parameters Freeze trains: those of each layer list's last num_trainable_layers layers and of the named modules. */
export function freezeParameters(model: PreTrainedModel, config: FreezeConfig): string[] {
  const chosen: string[] = [];
  if (config.num_trainable_layers > 0) {
    const lists = layerLists(model, config.layers_pattern);
    if (lists.size === 0) {
      throw new ConfigError(
        `FREEZE: no list of numbered layers named ${config.layers_pattern ?? LAYER_LIST_NAMES.join("/")} in this model`,
        "set layers_pattern to the name of the model's layer list",
      );
    }
    for (const [list, layers] of lists) {
      if (config.num_trainable_layers > layers.length) {
        throw new ConfigError(
          `FREEZE: num_trainable_layers ${config.num_trainable_layers} but ${list} has ${layers.length} layers`,
          `use at most ${layers.length}`,
        );
      }
      for (const path of layers.slice(layers.length - config.num_trainable_layers))
        chosen.push(...parametersOfModules(model, [path]));
    }
  }
  for (const spec of [config.trainable_modules, config.modules_to_save]) {
    if (spec === null || spec.length === 0) continue;
    const found = parametersOfModules(model, spec);
    if (found.length === 0 && spec === config.trainable_modules)
      throw new ConfigError(
        `FREEZE: no module matches trainable_modules ${JSON.stringify(spec)}`,
        'name modules the model has (e.g. "lm_head", "norm")',
      );
    chosen.push(...found);
  }
  return ownParameterNames(model, chosen);
}

const FREEZE: ParameterSelection<FreezeConfig> = {
  complete: (c) => makeFreezeConfig(c, false),
  select: freezeParameters,
};

registerMethod<FreezeConfig>({
  peftType: PeftType.FREEZE,
  prefix: "",
  configFromJson: makeFreezeConfig,
  family: "injected-layers",
  createHost: selectionHostFactory(FREEZE),
});
