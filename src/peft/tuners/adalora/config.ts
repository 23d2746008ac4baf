/**
 * AdaLoraConfig: LoRA's fields plus AdaLoRA's schedule (peft 0.15.2's AdaLoraConfig, same defaults and checks).
 *
 * AdaLoRA has three phases: `tinit` warm-up steps at the full budget (init_r per layer), a budgeting phase
 * until step total_step − tfinal where the total rank shrinks on a cubic schedule to target_r per layer, and
 * `tfinal` final steps at the fixed final ranks. `r` is LoRA's and unused (a warning when set to anything but 8).
 */
import { check, configBuilder, PeftType, type PeftConfig } from "../../config.js";
import { LORA_DEFAULTS, validateLoraFields, type LoraConfig } from "../lora/config.js";

/** The LoRA fields AdaLoRA shares (every one but rank_pattern, which AdaLoRA redefines). */
type SharedLoraFields = Pick<LoraConfig, Exclude<keyof typeof LORA_DEFAULTS, "rank_pattern">>;

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

/** Defaults of every AdaLoRA field (peft 0.15.2). */
export const ADALORA_DEFAULTS = {
  ...LORA_DEFAULTS,
  target_r: 8, init_r: 12, tinit: 0, tfinal: 0, deltaT: 1, beta1: 0.85, beta2: 0.85, orth_reg_weight: 0.5,
  total_step: null, rank_pattern: null,
} as const;

/** AdaLoraConfig.__post_init__'s checks (after LoRA's), with clear errors. */
export function validateAdaLoraFields(c: AdaLoraConfig): void {
  validateLoraFields(c as unknown as LoraConfig);
  check(!c.use_dora, "ADALORA does not support DoRA.");
  check(!(c.loftq_config && Object.keys(c.loftq_config).length > 0), "ADALORA does not support LOFTQ.");
  if (c.r !== 8) {
    process.emitWarning("Note that `r` is not used in AdaLora and will be ignored. If you intended to set the initial rank, use `init_r` instead.");
  }
  check(
    typeof c.total_step === "number" && Number.isInteger(c.total_step) && c.total_step > 0,
    `AdaLoRA needs \`total_step\`, the total number of training steps, to schedule its rank budget: supply an integer > 0 (got ${String(c.total_step)})`,
  );
  for (const f of ["init_r", "target_r", "tinit", "tfinal"] as const) {
    check(Number.isInteger(c[f]) && c[f] >= 0, `\`${f}\` should be a non-negative integer, got ${String(c[f])}`);
  }
  check(Number.isInteger(c.deltaT) && c.deltaT > 0, `\`deltaT\` should be a positive integer, got ${String(c.deltaT)}`);
  check(
    c.tinit < c.total_step! - c.tfinal,
    `The supplied schedule values don't allow for a budgeting phase (tinit ${c.tinit} ≥ total_step ${c.total_step} − tfinal ${c.tfinal}). Decrease \`tfinal\`/\`tinit\` or increase \`total_step\`.`,
  );
  check(c.rank_pattern === null || (typeof c.rank_pattern === "object" && !Array.isArray(c.rank_pattern)), "`rank_pattern` must be null or an object mapping \"<module>.lora_E\" to a list of booleans");
  for (const [k, v] of Object.entries(c.rank_pattern ?? {})) {
    check(Array.isArray(v) && v.every((b) => typeof b === "boolean"), `rank_pattern["${k}"] must be a list of booleans (one per initial rank), got ${JSON.stringify(v)}`);
  }
}

/** Build an AdaLoRA config from fields over the defaults; `warnUnknown` for files written by other peft versions. */
export const makeAdaLoraConfig = configBuilder<AdaLoraConfig>(PeftType.ADALORA, ADALORA_DEFAULTS, validateAdaLoraFields);

/** An AdaLoRA config from user fields (TypeScript users) — defaults filled in, validated. */
export function AdaLoraConfig(fields: Partial<AdaLoraConfig> = {}): AdaLoraConfig {
  return makeAdaLoraConfig(fields, false);
}
