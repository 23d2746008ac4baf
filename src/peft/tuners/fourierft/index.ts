/** FourierFT: registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { makeFourierFTConfig, type FourierFTConfig } from "./config.js";
import { FourierFTModel } from "./model.js";

export { FourierFTConfig, FOURIERFT_DEFAULTS } from "./config.js";
export { FourierFTModel, nFrequencyFor } from "./model.js";
export { FourierFTLinear, frequencyPositions } from "./layer.js";

registerMethod<FourierFTConfig>({
  peftType: PeftType.FOURIERFT,
  prefix: "fourierft_",
  configFromJson: makeFourierFTConfig,
  family: "injected-layers",
  createHost: hostFactory(FourierFTModel),
});
