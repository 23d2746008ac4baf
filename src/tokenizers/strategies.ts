/** Resolving padding/truncation arguments the way transformers' `_get_padding_truncation_strategies` does. */
import type { PaddingStrategy, TruncationStrategy } from "./types.js";
import type { TruncationMode } from "./truncation.js";

/** transformers' LARGE_INTEGER: a model_max_length above it means "no limit". */
export const LARGE_INTEGER = 1e20;

/** transformers' VERY_LARGE_INTEGER: the model_max_length of tokenizers that set none. */
export const VERY_LARGE_INTEGER = 1e30;

/** The resolved strategies of one call. */
export interface Strategies {
  padding: "none" | "longest" | "max_length";
  truncation: TruncationMode | null;
  maxLength: number | null;
}

/** Padding argument → strategy. */
function paddingMode(padding: PaddingStrategy | undefined): Strategies["padding"] {
  if (padding === true || padding === "longest") return "longest";
  if (padding === "max_length") return "max_length";
  if (padding === undefined || padding === false || padding === "do_not_pad") return "none";
  throw new Error(`Unknown padding ${JSON.stringify(padding)}: use true, "longest", "max_length" or false`);
}

/** Truncation argument → strategy (null: no truncation). */
function truncationMode(truncation: TruncationStrategy | undefined): TruncationMode | null {
  if (truncation === true || truncation === "longest_first") return "longest_first";
  if (truncation === "only_first" || truncation === "only_second") return truncation;
  if (truncation === undefined || truncation === false || truncation === "do_not_truncate") return null;
  throw new Error(
    `Unknown truncation ${JSON.stringify(truncation)}: use true, "longest_first", "only_first", "only_second" or false`,
  );
}

/**
 * Resolves padding/truncation/maxLength: maxLength alone truncates (longest_first); a missing maxLength falls back to
 * modelMaxLength unless that is unset (huge).
 */
export function resolveStrategies(
  args: { padding?: PaddingStrategy; truncation?: TruncationStrategy; maxLength?: number; padToMultipleOf?: number },
  modelMaxLength: number,
): Strategies {
  let padding = paddingMode(args.padding);
  let truncation =
    args.truncation === undefined && args.maxLength !== undefined && padding === "none"
      ? "longest_first"
      : truncationMode(args.truncation);
  let maxLength = args.maxLength ?? null;
  if (maxLength !== null && (!Number.isInteger(maxLength) || maxLength < 0))
    throw new Error(`maxLength must be a non-negative integer, got ${maxLength}`);
  if (maxLength === null) {
    const limited = modelMaxLength <= LARGE_INTEGER;
    if (padding === "max_length") {
      if (limited) maxLength = modelMaxLength;
      else padding = "none"; // transformers warns and does not pad
    }
    if (truncation !== null) {
      if (limited) maxLength = modelMaxLength;
      else truncation = null; // transformers warns and does not truncate
    }
  }
  const multiple = args.padToMultipleOf;
  if (multiple !== undefined && (!Number.isInteger(multiple) || multiple <= 0))
    throw new Error(`padToMultipleOf must be a positive integer, got ${multiple}`);
  if (
    truncation !== null &&
    padding !== "none" &&
    multiple !== undefined &&
    maxLength !== null &&
    maxLength % multiple !== 0
  ) {
    throw new Error(
      `Truncation and padding are both activated but truncation length (${maxLength}) is not a ` +
        `multiple of padToMultipleOf (${multiple}).`,
    );
  }
  return { padding, truncation, maxLength };
}
