/** DiffPruning: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { makeDiffPruningConfig, type DiffPruningConfig } from "./config.js";
import { DiffPruningModel } from "./model.js";

export { DiffPruningConfig, DIFF_PRUNING_FIELDS } from "./config.js";
export { DiffPruningModel } from "./model.js";
export { DiffPruningLinear, hardConcreteGate, expectedL0, HC_BETA, HC_GAMMA, HC_ZETA } from "./layer.js";

registerMethod<DiffPruningConfig>({
  peftType: PeftType.DIFF_PRUNING,
  prefix: "diff_",
  configFromJson: makeDiffPruningConfig,
  family: "injected-layers",
  createHost: hostFactory(DiffPruningModel),
});
