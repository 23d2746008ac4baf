/** LoHaModel (peft 0.15.2): LoHa layers injected into Linear targets (rank/alpha per module from the patterns). */
import { LycorisTuner, type LycorisSettings } from "../lycoris.js";
import { makeLoHaConfig, type LoHaConfig } from "./config.js";
import { LoHaLinear } from "./layer.js";

/** LoHa injected into a model. */
export class LoHaModel extends LycorisTuner<LoHaConfig, LoHaLinear> {
  readonly prefix = "hada_";
  protected readonly layerClass = LoHaLinear;
  protected readonly makeConfig = makeLoHaConfig;
  protected readonly methodName = "LoHa";

  protected settingsFor(config: LoHaConfig, key: string): LycorisSettings {
    return {
      ...this.rankAndAlpha(config, key),
      rankDropout: config.rank_dropout,
      moduleDropout: config.module_dropout,
      initWeights: config.init_weights,
      rankDropoutScale: true,
    };
  }
}
