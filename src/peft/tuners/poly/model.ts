/**
 * PolyModel (peft 0.15.2): Poly layers injected into Linear targets (LoRA's default targets). Every forward and
 * generate needs `taskIds` (one task per batch row); the host hands them to its layers for the call, as peft's
 * pre-forward hooks do. Poly adapters cannot be merged.
 */
import type { Linear } from "../../../nn/index.js";
import type { BaseModelOutput, ModelOutput, Seq2SeqInputs } from "../../../models/outputs.js";
import { withForward, type Generative } from "../../../models/generation/index.js";
import type { Tensor } from "../../../tensor/index.js";
import type { AdapterCapabilities } from "../../contract.js";
import { LinearTuner } from "../linear-tuner.js";
import { LORA_TARGETS } from "../../mapping.js";
import { makePolyConfig, type PolyConfig } from "./config.js";
import { PolyLinear } from "./layer.js";

/** Poly injected into a model. */
export class PolyModel extends LinearTuner<PolyConfig, PolyLinear> {
  readonly prefix = "poly_";
  protected readonly methodName = "Poly";
  protected readonly defaultTargets = LORA_TARGETS;
  protected readonly layerClass = PolyLinear;
  override readonly capabilities: AdapterCapabilities = {
    merge: null,
    weightedCombination: null,
    optimizerStepHook: null,
  };

  protected readonly buildConfig = makePolyConfig;

  protected makeLayer(base: Linear): PolyLinear {
    return new PolyLinear(base);
  }

  protected addAdapter(layer: PolyLinear, config: PolyConfig, adapterName: string): void {
    layer.updateLayer(adapterName, config);
  }

  /**
   * Run the model with the rows' tasks (inputs.taskIds) routed to every Poly layer. They stay set until the next
   * forward: gradient checkpointing reruns the layers during backward.
   */
  override forward(inputs: Seq2SeqInputs): ModelOutput | BaseModelOutput {
    const { taskIds, ...rest } = inputs;
    for (const [, layer] of this.tunerLayers()) (layer as PolyLinear).taskIds = taskIds ?? null;
    return this.model.forward(rest);
  }

  /** The model generates through this host, so that each step gets the task ids (given here, or in the step's inputs). */
  override generative(taskIds?: Tensor): Generative {
    return withForward(
      super.generative(),
      (inputs) => this.forward(taskIds ? { ...inputs, taskIds } : inputs) as ModelOutput,
    );
  }
}
