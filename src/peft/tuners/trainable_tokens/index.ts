/** Trainable tokens: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { makeTrainableTokensConfig, type TrainableTokensConfig } from "./config.js";
import { TrainableTokensModel } from "./model.js";

export { TrainableTokensConfig, TRAINABLE_TOKENS_FIELDS } from "./config.js";
export { TrainableTokensModel } from "./model.js";
export { TrainableTokensLayer } from "./layer.js";

registerMethod<TrainableTokensConfig>({
  peftType: PeftType.TRAINABLE_TOKENS,
  prefix: "trainable_tokens_",
  configFromJson: makeTrainableTokensConfig,
  family: "injected-layers",
  createHost: hostFactory(TrainableTokensModel),
});
