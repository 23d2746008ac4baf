/** Bottleneck adapters (AdapterHub's SeqBn / DoubleSeqBn): registration of the method and its public names. */
import { PeftType } from "../../config.js";
import { hostFactory, registerMethod } from "../../registry.js";
import { makeBottleneckConfig, type BottleneckConfig } from "./config.js";
import { BottleneckModel } from "./model.js";

export { SeqBnConfig, DoubleSeqBnConfig, BOTTLENECK_FIELDS } from "./config.js";
export type { BottleneckConfig } from "./config.js";
export { BottleneckModel } from "./model.js";
export { BottleneckAdapter, BottleneckSite } from "./layer.js";

registerMethod<BottleneckConfig>({
  peftType: PeftType.BOTTLENECK,
  prefix: "_adapters.",
  configFromJson: makeBottleneckConfig,
  family: "injected-layers",
  createHost: hostFactory(BottleneckModel),
});
