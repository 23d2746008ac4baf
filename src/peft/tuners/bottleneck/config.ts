/**
 * BottleneckConfig: AdapterHub `adapters`' bottleneck adapter configuration (BnConfig), with its field names and
 * SeqBnConfig's (Pfeiffer et al., 2020) defaults; DoubleSeqBnConfig gives Houlsby et al.'s (2019) placement. peft
 * has no bottleneck adapter, so peft_type "BOTTLENECK" is peft-ts's own; the field names are AdapterHub's.
 */
import { check, configBuilder, PeftType, type MethodFields, type PeftConfig } from "../../config.js";
import {
  bool,
  either,
  field,
  integer,
  listOf,
  nullable,
  number,
  oneOf,
  recordOf,
  string,
} from "../../../io/config-fields.js";

/** Bottleneck adapter configuration (AdapterHub's BnConfig names). */
export interface BottleneckConfig extends PeftConfig {
  /** An adapter after each layer's multi-head attention block. */
  mh_adapter: boolean;
  /** An adapter after each layer's feed-forward block. */
  output_adapter: boolean;
  /** hidden size / bottleneck size: one number, or layer index → number with a "default" entry. */
  reduction_factor: number | Record<string, number>;
  /** The bottleneck's activation (AdapterHub/transformers names: relu, swish, gelu, gelu_new, silu, tanh, sigmoid). */
  non_linearity: string;
  /** Add the block's residual before the adapter (Pfeiffer: the adapter sees the layer output). */
  original_ln_before: boolean;
  original_ln_after: boolean;
  residual_before_ln: boolean | string;
  adapter_residual_before_ln: boolean;
  ln_before: boolean;
  ln_after: boolean;
  /** "bert": N(0, 0.02) weights, zero biases; "mam_adapter": Kaiming-uniform down projection, zero up projection (starts as the identity). */
  init_weights: string;
  is_parallel: boolean;
  /** The adapter output is multiplied by this. */
  scaling: number | string;
  use_gating: boolean;
  inv_adapter: string | null;
  inv_adapter_reduction_factor: number | null;
  cross_adapter: boolean;
  /** Layer indices that get no adapter. */
  leave_out: number[];
  /** Dropout on the adapter output while training. */
  dropout: number;
  phm_layer: boolean;
  stochastic_depth: number;
}

const notHere = (what: string) => ({
  notImplemented: `${what} is not implemented by peft-ts's bottleneck adapters; leave it at its default`,
});

/** Every bottleneck field: AdapterHub's names, SeqBnConfig's defaults. */
export const BOTTLENECK_FIELDS: MethodFields<BottleneckConfig> = {
  mh_adapter: field(bool, false, "Add an adapter after each layer's attention block."),
  output_adapter: field(bool, true, "Add an adapter after each layer's feed-forward block."),
  reduction_factor: field<number | Record<string, number>>(
    either(number({ above: 0 }), recordOf(number({ above: 0 }))),
    16,
    'Hidden size divided by the bottleneck size (or layer index → factor, with "default").',
  ),
  non_linearity: field(
    oneOf("relu", "swish", "silu", "gelu", "gelu_new", "tanh", "sigmoid"),
    "relu",
    "The bottleneck's activation.",
  ),
  original_ln_before: field(
    bool,
    true,
    "Add the block's residual before the adapter (true: Pfeiffer; false: Houlsby).",
  ),
  original_ln_after: field(
    bool,
    true,
    "Add the block's residual after the adapter.",
    notHere("original_ln_after false"),
  ),
  residual_before_ln: field<boolean | string>(
    either(bool, string),
    true,
    "Take the adapter's residual before the layer norm.",
    notHere("residual_before_ln other than true"),
  ),
  adapter_residual_before_ln: field(
    bool,
    false,
    "Apply the adapter's residual before its own output layer norm (only with ln_after).",
  ),
  ln_before: field(bool, false, "A new layer norm before the bottleneck.", notHere("ln_before")),
  ln_after: field(bool, false, "A new layer norm after the bottleneck.", notHere("ln_after")),
  init_weights: field(
    oneOf("bert", "mam_adapter", "houlsby"),
    "bert",
    "How the projections start: bert (N(0, 0.02)) or mam_adapter (zero up projection).",
    {
      notImplemented: 'init_weights "houlsby" (truncated normal) is not implemented; use "bert" or "mam_adapter"',
      implemented: (v) => v === "bert" || v === "mam_adapter",
    },
  ),
  is_parallel: field(bool, false, "Parallel adapters (He et al.).", notHere("is_parallel")),
  scaling: field<number | string>(either(number(), string), 1, "The adapter output's factor.", {
    notImplemented: 'learned scalings ("learned", "channel") are not implemented; give a number',
    implemented: (v) => typeof v === "number",
  }),
  use_gating: field(bool, false, "A learned gate on the adapter output (UniPELT).", notHere("use_gating")),
  inv_adapter: field<string | null>(
    nullable(string),
    null,
    "Invertible adapters after the embeddings.",
    notHere("inv_adapter"),
  ),
  inv_adapter_reduction_factor: field<number | null>(
    nullable(number()),
    null,
    "The invertible adapters' reduction factor.",
  ),
  cross_adapter: field(bool, false, "Adapters after cross-attention blocks.", notHere("cross_adapter")),
  leave_out: field<number[]>(listOf(integer({ min: 0 })), [], "Layer indices that get no adapter."),
  dropout: field(number({ min: 0, below: 1 }), 0, "Dropout on the adapter output while training."),
  phm_layer: field(bool, false, "Parameterized hypercomplex projections (Compacter).", notHere("phm_layer")),
  stochastic_depth: field(
    number({ min: 0, max: 1 }),
    0,
    "Probability of dropping whole layers (vision models).",
    notHere("stochastic_depth"),
  ),
};

/** Placements this implementation computes: Pfeiffer's output adapter on the layer output, or Houlsby's sublayer adapters. */
function validateBottleneckFields(c: BottleneckConfig): void {
  check(
    c.mh_adapter || c.output_adapter,
    "BOTTLENECK config adds no adapter: set mh_adapter or output_adapter to true",
  );
  check(
    !(c.mh_adapter && c.original_ln_before),
    "BOTTLENECK: mh_adapter with original_ln_before true is not implemented; use " +
      "original_ln_before false (Houlsby, DoubleSeqBnConfig) for attention adapters",
  );
  if (typeof c.reduction_factor === "object")
    check("default" in c.reduction_factor, 'BOTTLENECK: a reduction_factor mapping needs a "default" entry');
}

/** Build a bottleneck config from fields over SeqBnConfig's defaults. */
export const makeBottleneckConfig = configBuilder<BottleneckConfig>(
  PeftType.BOTTLENECK,
  BOTTLENECK_FIELDS,
  validateBottleneckFields,
  {
    phm_dim: { versions: "adapters", default: 4, inert: true },
    factorized_phm_W: { versions: "adapters", default: true, inert: true },
    shared_W_phm: { versions: "adapters", default: false, inert: true },
    shared_phm_rule: { versions: "adapters", default: true, inert: true },
    factorized_phm_rule: { versions: "adapters", default: false, inert: true },
    phm_c_init: { versions: "adapters", default: "normal", inert: true },
    phm_init_range: { versions: "adapters", default: 0.0001, inert: true },
    learn_phm: { versions: "adapters", default: true, inert: true },
    hypercomplex_nonlinearity: { versions: "adapters", default: "glorot-uniform", inert: true },
    phm_rank: { versions: "adapters", default: 1, inert: true },
    phm_bias: { versions: "adapters", default: true, inert: true },
    architecture: { versions: "adapters", default: null, inert: true },
  },
);

/** A bottleneck config with AdapterHub's SeqBnConfig defaults (Pfeiffer: one adapter on each layer's output). */
export function SeqBnConfig(fields: Partial<BottleneckConfig> = {}): BottleneckConfig {
  return makeBottleneckConfig(fields, false);
}

/** A bottleneck config with AdapterHub's DoubleSeqBnConfig defaults (Houlsby: adapters after attention and feed-forward). */
export function DoubleSeqBnConfig(fields: Partial<BottleneckConfig> = {}): BottleneckConfig {
  return makeBottleneckConfig(
    { original_ln_before: false, mh_adapter: true, output_adapter: true, non_linearity: "swish", ...fields },
    false,
  );
}
