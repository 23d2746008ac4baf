/**
 * The decode batch's KV cache: one buffer per layer and side, [slots, kvHeads, capacity, headDim], that sequences
 * join and leave without the batch being re-padded or concatenated each step. Row r is the r-th running sequence.
 * Every row's positions end at the same column (the frontier, `length`): a row shorter than the longest is
 * left-padded, its padding masked out. A decode step passes views of the buffers as the past, and the model's
 * appendAlong writes the new column in place; joining rows are copied in once, a leaving row is replaced by the
 * last one, and when the longest row leaves, the columns no row uses any more are dropped (so the frontier is
 * always the longest row's length, and a model's position limit holds for the batch as for each row alone).
 * When the last row leaves, the buffers stay for the next batch (a fresh one faults in its pages as it is written:
 * ~25 ms of a prefill of 8 GPT-2 prompts, and as much again while they decode); clear() frees them.
 */
import { contiguous, copyInto, empty, growableView, keep, narrow, tidy, zeros, type Tensor } from "../tensor/index.js";
import type { PastKeyValues } from "../models/outputs.js";

/** Columns of room added when the buffers grow, beyond twice what is asked. */
const HEADROOM = 16;

/** Per-layer KV buffers shared by the rows of the decode batch. */
export class BatchCache {
  /** Per layer, the key and value buffers [slots, kvHeads, capacity, headDim]; empty while no row is cached. */
  private buffers: { key: Tensor; value: Tensor }[] = [];
  /** Cached positions of each row (its padding excluded). */
  readonly lengths: number[] = [];
  /** The column after every row's last position. */
  length = 0;

  /** Rows in the cache. */
  get rows(): number {
    return this.lengths.length;
  }

  /** The past of a decode step: views [rows, kvHeads, length, headDim] that the model extends in place by one. */
  past(): PastKeyValues {
    this.reserve(this.rows, this.length + 1);
    return this.buffers.map(({ key, value }) => ({
      key: narrow(growableView(key, 2, this.length), 0, 0, this.rows),
      value: narrow(growableView(value, 2, this.length), 0, 0, this.rows),
    }));
  }

  /** The attention mask of a decode step, [rows, length + 1]: 1 on each row's positions and on the new token. */
  stepMask(): Int32Array {
    const width = this.length + 1;
    const mask = new Int32Array(this.rows * width);
    this.lengths.forEach((len, r) => {
      mask.fill(1, r * width + this.length - len, (r + 1) * width);
    });
    return mask;
  }

  /** Whether every row spans all columns (no padding to mask). */
  get unpadded(): boolean {
    return this.lengths.every((len) => len === this.length);
  }

  /**
   * Take a decode step's keys/values [rows, kvHeads, length + 1, headDim]: the new column is already in the buffers
   * when the model appended in place (GPT-2 and the LLaMA family do); otherwise it is copied in.
   */
  advance(present: PastKeyValues): void {
    tidy(() =>
      present.forEach((kv, l) => {
        for (const side of ["key", "value"] as const) {
          const buffer = this.buffers[l]![side];
          if (kv[side].bufferRef === buffer.bufferRef) continue;
          copyInto(this.region(buffer, 0, this.rows, this.length, 1), narrow(kv[side], 2, this.length, 1));
        }
      }),
    );
    this.length++;
    for (let r = 0; r < this.rows; r++) this.lengths[r]!++;
  }

  /**
   * Append rows from a prefill's keys/values [rows, kvHeads, width, headDim], each row left-padded to `width` (its
   * positions end at the last column), with `lengths` positions each.
   */
  join(prefill: PastKeyValues, lengths: readonly number[]): void {
    const width = prefill[0]!.key.shape[2]!;
    const first = this.rows;
    if (this.buffers.length === 0) this.allocate(prefill, lengths.length, width);
    if (width > this.length) this.shiftRight(width - this.length);
    this.reserve(first + lengths.length, this.length);
    tidy(() =>
      prefill.forEach((kv, l) => {
        if (!this.buffers[l]) throw new Error("BatchCache.join: the prefill has more layers than the cache");
        for (const side of ["key", "value"] as const)
          copyInto(this.region(this.buffers[l]![side], first, lengths.length, this.length - width, width), kv[side]);
      }),
    );
    this.zeroPadding(first, lengths.length, this.length - width);
    this.lengths.push(...lengths);
  }

  /** Remove row r: the last row moves into its place. The buffers are kept when no row is left (see clear). */
  remove(r: number): void {
    const last = this.rows - 1;
    if (r !== last) {
      const len = this.lengths[last]!;
      tidy(() => {
        for (const b of this.buffers)
          for (const side of [b.key, b.value])
            copyInto(
              this.region(side, r, 1, this.length - len, len),
              this.region(side, last, 1, this.length - len, len),
            );
      });
      this.lengths[r] = len;
      this.zeroPadding(r, 1, this.length - len);
    }
    this.lengths.pop();
    const longest = Math.max(0, ...this.lengths);
    if (longest < this.length) this.shiftLeft(this.length - longest);
  }

  /** Free the buffers (an idle server's memory). */
  clear(): void {
    for (const b of this.buffers) for (const t of [b.key, b.value]) t.dispose();
    this.buffers = [];
    this.lengths.length = 0;
    this.length = 0;
  }

  /**
   * Zero columns [0, columns) of rows [row, row + rows): padding that no copy wrote. The buffers are not zeroed when
   * made (a fresh buffer faults in a page per 4 KiB it is written: ~30 ms for GPT-2's first batch of 8), and a
   * padding column is multiplied by a zero attention weight, which only gives 0 when the column is finite.
   */
  private zeroPadding(row: number, rows: number, columns: number): void {
    if (columns <= 0 || rows <= 0) return;
    tidy(() => {
      for (const b of this.buffers)
        for (const side of [b.key, b.value]) {
          const region = this.region(side, row, rows, 0, columns);
          copyInto(region, zeros(region.shape, side.dtype));
        }
    });
  }

  /** Rows [row, row + rows) × columns [column, column + columns) of a buffer. */
  private region(buffer: Tensor, row: number, rows: number, column: number, columns: number): Tensor {
    return narrow(narrow(buffer, 0, row, rows), 2, column, columns);
  }

  /** First buffers, shaped after a prefill's keys/values, with room for twice its rows and columns. */
  private allocate(like: PastKeyValues, rows: number, columns: number): void {
    const buffer = (t: Tensor) => {
      const [, heads, , dim] = t.shape as [number, number, number, number];
      // Not zeroed (see zeroPadding): every column a step reads is written first.
      return keep(empty([2 * rows, heads, 2 * columns + HEADROOM, dim], t.dtype));
    };
    this.buffers = like.map((kv) => ({ key: buffer(kv.key), value: buffer(kv.value) }));
  }

  /** Room for `rows` rows and `columns` columns: larger buffers (twice what is asked) with the cached rows copied in. */
  private reserve(rows: number, columns: number): void {
    const current = this.buffers[0]?.key;
    if (!current || (current.shape[0]! >= rows && current.shape[2]! >= columns)) return;
    const slots = Math.max(current.shape[0]!, 2 * rows),
      capacity = Math.max(current.shape[2]!, 2 * columns + HEADROOM);
    this.buffers = this.buffers.map((b) => {
      const grow = (old: Tensor) => {
        const [, heads, , dim] = old.shape as [number, number, number, number];
        const fresh = keep(empty([slots, heads, capacity, dim], old.dtype));
        if (this.rows > 0 && this.length > 0)
          tidy(() =>
            copyInto(this.region(fresh, 0, this.rows, 0, this.length), this.region(old, 0, this.rows, 0, this.length)),
          );
        old.dispose();
        return fresh;
      };
      return { key: grow(b.key), value: grow(b.value) };
    });
  }

  /** Move every row `by` columns right (a joining prompt longer than the frontier). */
  private shiftRight(by: number): void {
    this.reserve(this.rows, this.length + by);
    this.shift(0, by);
    this.zeroPadding(0, this.rows, by);
    this.length += by;
  }

  /** Drop the first `by` columns, which only padding uses. */
  private shiftLeft(by: number): void {
    this.shift(by, 0);
    this.length -= by;
  }

  /** Copy columns [from, length) of every row to start at column `to` (through a copy: the ranges overlap). */
  private shift(from: number, to: number): void {
    const columns = this.length - from;
    if (this.rows === 0 || columns === 0) return;
    tidy(() => {
      for (const b of this.buffers)
        for (const side of [b.key, b.value]) {
          const moved = contiguous(this.region(side, 0, this.rows, from, columns), true);
          copyInto(this.region(side, 0, this.rows, to, columns), moved);
        }
    });
  }
}
