/** LoHaModel (peft 0.15.2): LoHa layers injected into Linear targets (rank/alpha per module from the patterns). */
import { Linear, type Module } from "../../../nn/index.js";
import { LycorisTuner, type LycorisSettings } from "../lycoris.js";
import { makeLoHaConfig, type LoHaConfig } from "./config.js";
import { LoHaLinear } from "./layer.js";

/** LoHa injected into a model. */
export class LoHaModel extends LycorisTuner<LoHaConfig, LoHaLinear> {
  readonly prefix = "hada_";
  protected readonly methodName = "LoHa";

  protected makeConfig(fields: LoHaConfig): LoHaConfig {
    return makeLoHaConfig(fields, false);
  }

  protected newLayer(base: Linear): LoHaLinear {
    return new LoHaLinear(base);
  }

  protected isOwnLayer(m: Module): m is LoHaLinear {
    return m instanceof LoHaLinear;
  }

  protected settingsFor(config: LoHaConfig, key: string): LycorisSettings {
    return { ...this.rankAndAlpha(config, key), rankDropout: config.rank_dropout, moduleDropout: config.module_dropout, initWeights: config.init_weights, rankDropoutScale: true };
  }
}
