/** PolyConfig: peft 0.15.2's fields and defaults (Polytropon: LoRA skills mixed per task by a learned router). */
import { configBuilder, PeftType, TARGETING_FIELDS, type MethodFields, type PeftConfig } from "../../config.js";
import { bool, defaultsOf, field, integer, oneOf, pick } from "../../../io/config-fields.js";

/** Poly configuration (HF field names). */
export interface PolyConfig extends PeftConfig {
  /** Rank of each skill's LoRA factors. */
  r: number;
  target_modules: string | string[] | null;
  exclude_modules: string | string[] | null;
  modules_to_save: string[] | null;
  /** true: the B factors start at 0 (a fresh adapter changes nothing); false: random. */
  init_weights: boolean;
  /** The router: "poly" (a learned per-task mixture over skills), the only type peft 0.15.2 has. */
  poly_type: "poly";
  /** Number of tasks (task ids 0 … n_tasks − 1). */
  n_tasks: number;
  /** Number of skills (LoRA modules) per split. */
  n_skills: number;
  /** Number of splits of the input and output features, each mixed separately (Multi-Head Routing). */
  n_splits: number;
}

/** Every Poly field (peft 0.15.2). */
export const POLY_FIELDS: MethodFields<PolyConfig> = {
  ...pick(TARGETING_FIELDS, "target_modules", "exclude_modules", "modules_to_save"),
  r: field(integer({ min: 1 }), 8, "Rank of each skill's LoRA factors."),
  init_weights: field(bool, true, "true: the B factors start at 0 (a fresh adapter changes nothing); false: random."),
  poly_type: field<"poly">(
    oneOf("poly"),
    "poly",
    'The router type; "poly" (a learned per-task mixture of skills) is the only one.',
  ),
  n_tasks: field(integer({ min: 1 }), 1, "Number of tasks (task ids 0 … n_tasks − 1)."),
  n_skills: field(integer({ min: 1 }), 4, "Number of skills (LoRA modules) per split."),
  n_splits: field(
    integer({ min: 1 }),
    1,
    "Number of splits of the features, each routed separately (Multi-Head Routing).",
  ),
};

/** Defaults of every Poly field (peft 0.15.2). */
export const POLY_DEFAULTS = defaultsOf(POLY_FIELDS);

/** Build a Poly config from fields over the defaults (`fromFile`: lenient with fields of other peft versions). */
export const makePolyConfig = configBuilder<PolyConfig>(PeftType.POLY, POLY_FIELDS, () => {});

/** A Poly config from user fields (TypeScript users) — defaults filled in, validated. */
export function PolyConfig(fields: Partial<PolyConfig> = {}): PolyConfig {
  return makePolyConfig(fields, false);
}
