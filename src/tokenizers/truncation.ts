/** Truncation of encoded sequences with the rules of Hugging Face's (Rust) fast tokenizers. */
import type { Side } from "./types.js";

/** A truncation strategy once booleans are resolved. */
export type TruncationMode = "longest_first" | "only_first" | "only_second";

/** The first `n` ids (side "right" cuts the end) or the last `n` (side "left" cuts the start). */
function keep(ids: number[], n: number, side: Side): number[] {
  if (n >= ids.length) return ids;
  return side === "right" ? ids.slice(0, n) : ids.slice(ids.length - n);
}

/** Truncates a sequence and its optional pair to at most `maxLength` ids together, as tokenizers' `truncate_encodings`. */
export function truncatePair(
  a: number[],
  b: number[] | null,
  maxLength: number,
  mode: TruncationMode,
  side: Side,
): [number[], number[] | null] {
  const total = a.length + (b?.length ?? 0);
  if (total <= maxLength) return [a, b];
  if (mode === "longest_first") {
    if (b === null) return [keep(a, maxLength, side), null];
    // Shorter one kept whole if the longer can absorb the cut; otherwise split the budget (the longer gets the odd one).
    let n1 = Math.min(a.length, b.length);
    let n2 = n1 > maxLength ? n1 : Math.max(n1, maxLength - n1);
    if (n1 + n2 > maxLength) {
      n1 = Math.floor(maxLength / 2);
      n2 = n1 + (maxLength % 2);
    }
    const [na, nb] = a.length > b.length ? [n2, n1] : [n1, n2];
    return [keep(a, na, side), keep(b, nb, side)];
  }
  const toRemove = total - maxLength;
  if (mode === "only_second" && b === null)
    throw new Error('Truncation "only_second" needs a pair of texts, but only one was given');
  const target = mode === "only_first" ? a : (b as number[]);
  if (target.length <= toRemove) {
    throw new Error(
      `Truncation "${mode}": the ${mode === "only_first" ? "first" : "second"} sequence ` +
        `(${target.length} tokens) is too short ` +
        `to bring the total (${total}) down to max length ${maxLength}; use truncation "longest_first"`,
    );
  }
  const cut = keep(target, target.length - toRemove, side);
  return mode === "only_first" ? [cut, b] : [a, cut];
}
