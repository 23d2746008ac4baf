/**
 * BOFTModel (peft 0.15.2): BOFT layers injected into Linear targets (LoRA's default targets by model type). GPT-2's
 * Conv1D is refused, as peft 0.15.2 refuses it.
 */
import type { Linear } from "../../../nn/index.js";
import { ConfigError } from "../../../errors.js";
import { OrthogonalTuner } from "../oft/model.js";
import { makeBOFTConfig, type BOFTConfig } from "./config.js";
import { BOFTLinear, type BOFTSettings } from "./layer.js";

/** BOFT injected into a model. */
export class BOFTModel extends OrthogonalTuner<BOFTConfig, BOFTSettings, BOFTLinear> {
  readonly prefix = "boft_";
  protected readonly methodName = "BOFT";
  protected override readonly ownBias = "boft_only";
  protected readonly buildConfig = makeBOFTConfig;
  protected readonly layerClass = BOFTLinear;

  /** peft's check: a bias setting only with a single adapter. */
  protected override injectBuilt(config: BOFTConfig, adapterName: string): BOFTConfig {
    if (this.peftConfig.size > 0 && config.bias !== "none")
      throw new ConfigError(
        "BOFTModel supports only 1 adapter with bias. When using multiple adapters, set bias to " +
          "'none' for all adapters.",
      );
    return super.injectBuilt(config, adapterName);
  }

  protected makeLayer(base: Linear): BOFTLinear {
    return new BOFTLinear(base);
  }

  protected settingsOf(c: BOFTConfig): BOFTSettings {
    return {
      blockSize: c.boft_block_size,
      blockNum: c.boft_block_num,
      nButterflyFactor: c.boft_n_butterfly_factor,
      dropout: c.boft_dropout,
      initWeights: c.init_weights,
    };
  }
}
