/**
 * AdaLoraConfig: LoRA's fields plus AdaLoRA's schedule (peft 0.15.2's AdaLoraConfig, same defaults and checks).
 *
 * AdaLoRA has three phases: `tinit` warm-up steps at the full budget (init_r per layer), a budgeting phase
 * until step total_step − tfinal where the total rank shrinks on a cubic schedule to target_r per layer, and
 * `tfinal` final steps at the fixed final ranks. `r` is LoRA's and unused (a warning when set to anything but 8).
 */
import { check, configBuilder, PeftType, type MethodFields, type PeftConfig } from "../../config.js";
import { bool, defaultsOf, field, integer, listOf, nullable, number, recordOf } from "../../../io/config-fields.js";
import { LORA_FIELDS, LORA_FOREIGN, validateLoraFields, type LoraConfig } from "../lora/config.js";
import { initUsesBaseWeight } from "../lora/init.js";

/** The LoRA fields AdaLoRA shares (every one but rank_pattern, which AdaLoRA redefines). */
type SharedLoraFields = Omit<Pick<LoraConfig, keyof typeof LORA_FIELDS>, "rank_pattern">;

/** AdaLoRA configuration (HF field names). */
export interface AdaLoraConfig extends PeftConfig, SharedLoraFields {
  /** Target average rank per adapted matrix at the end of the budgeting phase. */
  target_r: number;
  /** Initial rank of every adapted matrix. */
  init_r: number;
  /** Warm-up steps before any rank is pruned. */
  tinit: number;
  /** Final steps at the final ranks. */
  tfinal: number;
  /** Steps between two budget allocations in the budgeting phase. */
  deltaT: number;
  /** EMA coefficient of the sensitivity smoothing. */
  beta1: number;
  /** EMA coefficient of the uncertainty. */
  beta2: number;
  /** Weight of the orthogonality penalty added to the training loss. */
  orth_reg_weight: number;
  /** Total training steps (required). */
  total_step: number | null;
  /**
   * Which singular triplets each layer keeps, written by the rank allocator: "<module path>.lora_E" (in memory
   * also "<module path>.lora_E.<adapter>") → one boolean per initial rank. null until ranks are allocated.
   */
  rank_pattern: Record<string, boolean[]> | null;
}

const count = integer({ min: 0 });
const ema = number({ min: 0, max: 1 });

/** Every AdaLoRA field (peft 0.15.2): LoRA's, then the rank schedule's. */
export const ADALORA_FIELDS: MethodFields<AdaLoraConfig> = {
  ...LORA_FIELDS,
  target_r: field(count, 8, "Target average rank per adapted matrix at the end of the budgeting phase."),
  init_r: field(count, 12, "Initial rank of every adapted matrix."),
  tinit: field(count, 0, "Warm-up steps before any rank is pruned."),
  tfinal: field(count, 0, "Final steps at the final ranks."),
  deltaT: field(integer({ min: 1 }), 1, "Steps between two budget allocations in the budgeting phase."),
  beta1: field(ema, 0.85, "EMA coefficient of the sensitivity smoothing."),
  beta2: field(ema, 0.85, "EMA coefficient of the uncertainty."),
  orth_reg_weight: field(number(), 0.5, "Weight of the orthogonality penalty added to the training loss."),
  total_step: field<number | null>(
    nullable(integer({ min: 1 })),
    null,
    "Total training steps (required): the rank budget is scheduled over them.",
  ),
  rank_pattern: field<Record<string, boolean[]> | null>(
    nullable(recordOf(listOf(bool))),
    null,
    "Kept singular triplets per layer, written by the rank allocator (null until ranks are allocated).",
  ),
};

/** Defaults of every AdaLoRA field (peft 0.15.2). */
export const ADALORA_DEFAULTS = defaultsOf(ADALORA_FIELDS);

/** AdaLoraConfig.__post_init__'s checks that span several fields (after LoRA's), with clear errors. */
export function validateAdaLoraFields(c: AdaLoraConfig): void {
  validateLoraFields(c as unknown as LoraConfig);
  check(!c.use_dora, "ADALORA does not support DoRA.");
  check(Object.keys(c.loftq_config).length === 0, "ADALORA does not support LOFTQ.");
  // peft 0.15.2's AdaLoRA layers take neither (they would be silently ignored there).
  check(
    !initUsesBaseWeight(c.init_lora_weights),
    `AdaLoRA does not support init_lora_weights "${String(c.init_lora_weights)}" (peft ` +
      `0.15.2's AdaLoRA layers ignore it); use true, false or "gaussian"`,
  );
  check(
    !c.lora_bias,
    "AdaLoRA does not support lora_bias (peft 0.15.2's AdaLoRA layers ignore it); set lora_bias false",
  );
  if (c.r !== 8) {
    process.emitWarning(
      "Note that `r` is not used in AdaLora and will be ignored. If you intended to set the " +
        "initial rank, use `init_r` instead.",
    );
  }
  check(
    c.total_step !== null,
    "AdaLoRA needs `total_step`, the total number of training steps, to schedule its rank " +
      "budget: supply an integer > 0 (got null)",
  );
  check(
    c.tinit < c.total_step! - c.tfinal,
    `The supplied schedule values don't allow for a budgeting phase (tinit ${c.tinit} ≥ ` +
      `total_step ${c.total_step} − tfinal ${c.tfinal}). Decrease \`tfinal\`/\`tinit\` or ` +
      `increase \`total_step\`.`,
  );
}

/** Build an AdaLoRA config from fields over the defaults; `warnUnknown` for files written by other peft versions. */
export const makeAdaLoraConfig = configBuilder<AdaLoraConfig>(
  PeftType.ADALORA,
  ADALORA_FIELDS,
  validateAdaLoraFields,
  LORA_FOREIGN,
);

/** An AdaLoRA config from user fields (TypeScript users) — defaults filled in, validated. */
export function AdaLoraConfig(fields: Partial<AdaLoraConfig> = {}): AdaLoraConfig {
  return makeAdaLoraConfig(fields, false);
}
