/** Padding of encoded sequences to one length, on the left or the right, with attention masks. */
import type { Side } from "./types.js";

/** Padded ids, masks and (when given) token type ids. */
export interface Padded {
  inputIds: number[][];
  attentionMask: number[][];
  tokenTypeIds?: number[][];
}

/** Pads every sequence to `length` (null: the longest one), rounded up to `multipleOf`; longer sequences stay as they are. */
export function padSequences(
  ids: number[][],
  opts: { length: number | null; multipleOf?: number; side: Side; padId: number; typeIds?: number[][] },
): Padded {
  let target = opts.length ?? Math.max(0, ...ids.map((s) => s.length));
  if (opts.multipleOf !== undefined && target % opts.multipleOf !== 0)
    target = (Math.floor(target / opts.multipleOf) + 1) * opts.multipleOf;
  const pad = <T>(seq: T[], value: T): T[] => {
    const n = Math.max(0, target - seq.length);
    const fill = new Array<T>(n).fill(value);
    return opts.side === "left" ? [...fill, ...seq] : [...seq, ...fill];
  };
  const out: Padded = {
    inputIds: ids.map((s) => pad(s, opts.padId)),
    attentionMask: ids.map((s) => pad(new Array<number>(s.length).fill(1), 0)),
  };
  if (opts.typeIds !== undefined) out.tokenTypeIds = opts.typeIds.map((t) => pad(t, 0));
  return out;
}
