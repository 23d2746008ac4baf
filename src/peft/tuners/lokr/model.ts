/** LoKrModel (peft 0.15.2): LoKr layers injected into Linear targets (rank/alpha per module from the patterns). */
import { LycorisTuner } from "../lycoris.js";
import { makeLoKrConfig, type LoKrConfig } from "./config.js";
import { LoKrLinear, type LoKrSettings } from "./layer.js";

/** LoKr injected into a model. */
export class LoKrModel extends LycorisTuner<LoKrConfig, LoKrLinear> {
  readonly prefix = "lokr_";
  protected readonly layerClass = LoKrLinear;
  protected readonly makeConfig = makeLoKrConfig;
  protected readonly methodName = "LoKr";

  protected settingsFor(config: LoKrConfig, key: string): LoKrSettings {
    return {
      ...this.rankAndAlpha(config, key),
      rankDropout: config.rank_dropout,
      moduleDropout: config.module_dropout,
      initWeights: config.init_weights,
      rankDropoutScale: config.rank_dropout_scale,
      decomposeBoth: config.decompose_both,
      decomposeFactor: config.decompose_factor,
    };
  }
}
