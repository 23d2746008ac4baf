/**
 * DiffPruningModel: diff-pruning layers injected into the target Linear / Conv1D modules, the expected-L0 penalty
 * added to the training loss, and magnitude pruning of the gated differences (after total_step optimizer steps,
 * or when pruneToSparsity is called).
 */
import { Conv1D, Linear, type Module } from "../../../nn/index.js";
import { add, mul, noGrad, reshape, tensor, tidy, type Tensor } from "../../../tensor/index.js";
import type { ModelOutput, Seq2SeqInputs } from "../../../models/outputs.js";
import { ConfigError } from "../../../errors.js";
import type { AdapterCapabilities, OptimizerStepHook, PeftTask } from "../../contract.js";
import { allLinearTargets } from "../../targets.js";
import { BaseTuner } from "../tuner.js";
import { makeDiffPruningConfig, type DiffPruningConfig } from "./config.js";
import { DiffPruningLinear, PRUNED_LOG_ALPHA, expectedL0 } from "./layer.js";

/** Diff pruning injected into a model. */
export class DiffPruningModel extends BaseTuner<DiffPruningConfig> implements OptimizerStepHook {
  readonly prefix = "diff_";
  override readonly capabilities: AdapterCapabilities = {
    merge: this,
    weightedCombination: null,
    optimizerStepHook: this,
  };

  /** Defaults and checks (plain config objects too); target_modules is required ("all-linear" is expanded). */
  protected prepareConfig(config: DiffPruningConfig): DiffPruningConfig {
    const c = makeDiffPruningConfig(config, false);
    if (c.target_modules === null)
      throw new ConfigError(
        "DIFF_PRUNING needs target_modules",
        'name the Linear modules to adapt, or use "all-linear"',
      );
    if (typeof c.target_modules === "string" && c.target_modules.toLowerCase() === "all-linear")
      c.target_modules = allLinearTargets(this.model, c.task_type);
    return c;
  }

  /** Only Linear and GPT-2's Conv1D layers can be adapted. */
  protected override checkTargetModule(key: string, target: Module): void {
    if (target instanceof DiffPruningLinear || target instanceof Linear || target instanceof Conv1D) return;
    throw new ConfigError(
      `Target module ${key} (${target.constructor.name}) is not supported by DIFF_PRUNING`,
      "target Linear or GPT-2 Conv1D modules",
    );
  }

  protected createOrUpdate(config: DiffPruningConfig, adapterName: string, target: Module, key: string): void {
    this.checkTargetModule(key, target);
    const layer = target instanceof DiffPruningLinear ? target : new DiffPruningLinear(target as Linear | Conv1D);
    layer.activeAdapters = [...this.activeAdapters];
    layer.updateLayer(adapterName, config.log_alpha_init);
    if (layer !== target) this.model.setSubmodule(key, layer);
  }

  /** The diff-pruning layers holding an adapter. */
  private layersOf(adapterName: string): DiffPruningLinear[] {
    return this.tunerLayers()
      .map(([, l]) => l)
      .filter((l): l is DiffPruningLinear => l instanceof DiffPruningLinear && l.hasAdapter(adapterName));
  }

  /** The penalty l0_lambda · E[‖z‖₀] / (number of gates) of the active adapters. */
  l0Penalty(): Tensor {
    let penalty: Tensor = tensor([0], [1]);
    for (const name of this.activeAdapters) {
      const lambda = this.peftConfig.get(name)!.l0_lambda;
      const layers = this.layersOf(name);
      const count = layers.reduce((s, l) => s + l.parts(name).logAlpha.size, 0);
      for (const l of layers) penalty = add(penalty, mul(expectedL0(l.parts(name).logAlpha), lambda / count));
    }
    return penalty;
  }

  /** The model's forward; while training, the loss also carries the expected-L0 penalty. */
  override forwardTask(task: PeftTask, inputs: Seq2SeqInputs): ModelOutput {
    const out = super.forwardTask(task, inputs);
    if (!this.training || !out.loss) return out;
    return { ...out, loss: reshape(add(out.loss, this.l0Penalty()), out.loss.shape) };
  }

  /**
   * Magnitude pruning (Guo et al.'s projection onto the L0 ball): the gated differences z ⊙ δ (gates in evaluation
   * form) of every layer of the adapter are ranked by magnitude together; the largest (1 − sparsity) fraction is
   * kept as δ with its gate fixed open (log α = +10), the rest becomes δ = 0 with the gate shut (log α = −10).
   * Returns the number of entries kept.
   */
  pruneToSparsity(
    sparsity = this.peftConfig.get(this.activeAdapters[0]!)!.target_sparsity,
    adapterName = this.activeAdapters[0]!,
  ): number {
    if (!(sparsity >= 0 && sparsity <= 1))
      throw new ConfigError(`pruneToSparsity: sparsity must be in [0, 1], got ${sparsity}`);
    const layers = this.layersOf(adapterName);
    const gated = layers.map((l) => noGrad(() => tidy(() => l.gatedDelta(adapterName, false).dataSync().slice())));
    const magnitudes = gated.flatMap((g, li) => Array.from(g, (v, i) => [Math.abs(v), li, i] as const));
    const keep = Math.round((1 - sparsity) * magnitudes.length);
    magnitudes.sort((a, b) => b[0] - a[0] || a[1] - b[1] || a[2] - b[2]);
    const kept = layers.map((l) => new Uint8Array(l.parts(adapterName).delta.size));
    for (const [, li, i] of magnitudes.slice(0, keep)) kept[li]![i] = 1;
    noGrad(() =>
      layers.forEach((l, li) => {
        const { delta, logAlpha } = l.parts(adapterName);
        const mask = kept[li]!;
        delta.copy_(
          tensor(
            Float32Array.from(gated[li]!, (v, i) => (mask[i] ? v : 0)),
            delta.shape,
          ),
        );
        logAlpha.copy_(
          tensor(
            Float32Array.from(mask, (m) => (m ? PRUNED_LOG_ALPHA : -PRUNED_LOG_ALPHA)),
            logAlpha.shape,
          ),
        );
      }),
    );
    return keep;
  }

  /** Prune the active adapter after its total_step-th optimizer step. */
  afterOptimizerStep(globalStep: number): void {
    const name = this.activeAdapters[0];
    const total = name === undefined ? null : this.peftConfig.get(name)!.total_step;
    if (total !== null && globalStep + 1 === total) this.pruneToSparsity(undefined, name);
  }
}
