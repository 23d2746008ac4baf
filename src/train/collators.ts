/**
 * Data collators: turn a list of tokenised examples into a padded batch of tensors, as transformers'
 * DataCollatorForSeq2Seq (labels padded with -100) and DataCollatorWithPadding do.
 */
import { type Tensor, tensor } from "../tensor/index.js";
import type { Example } from "./data.js";

/** A model-ready batch. */
export interface Batch {
  inputIds: Tensor;
  attentionMask: Tensor;
  labels?: Tensor;
  tokenTypeIds?: Tensor;
  /** Poly adapters: each row's task, from the examples' "task_ids" numbers. */
  taskIds?: Tensor;
}

/** Turns examples into a batch. */
export type DataCollator = (examples: readonly Example[]) => Batch;

/** Options shared by the collators. */
export interface PaddingOptions {
  padTokenId: number;
  /** "right" (default for training) or "left". */
  paddingSide?: "left" | "right";
  /** Pad lengths up to a multiple of this (e.g. 8). */
  padToMultipleOf?: number;
}

function ids(e: Example, field: string): number[] {
  const v = e[field];
  if (!Array.isArray(v))
    throw new Error(`collator: every example needs "${field}" as an array of token ids (got ${typeof v})`);
  return v as number[];
}

function padTo(rows: number[][], value: number, length: number, side: "left" | "right"): number[] {
  return rows.flatMap((r) => {
    const pad = new Array<number>(length - r.length).fill(value);
    return side === "left" ? [...pad, ...r] : [...r, ...pad];
  });
}

function batchLength(rows: number[][], multiple?: number): number {
  const longest = Math.max(...rows.map((r) => r.length));
  return multiple ? Math.ceil(longest / multiple) * multiple : longest;
}

/**
 * Pads input_ids with the pad id, attention_mask with 0 and token-level labels with -100 (HF's
 * DataCollatorForSeq2Seq with label_pad_token_id = -100); scalar labels (classes) are stacked.
 */
export function DataCollatorForSeq2Seq(opts: PaddingOptions): DataCollator {
  const side = opts.paddingSide ?? "right";
  return (examples) => {
    if (examples.length === 0) throw new Error("collator: empty batch");
    const inputs = examples.map((e) => ids(e, "input_ids"));
    const masks = examples.map((e, i) =>
      Array.isArray(e["attention_mask"]) ? (e["attention_mask"] as number[]) : inputs[i]!.map(() => 1),
    );
    const len = batchLength(inputs, opts.padToMultipleOf);
    const b = examples.length;
    const batch: Batch = {
      inputIds: tensor(Int32Array.from(padTo(inputs, opts.padTokenId, len, side)), [b, len]),
      attentionMask: tensor(Int32Array.from(padTo(masks, 0, len, side)), [b, len]),
    };
    if (examples.every((e) => Array.isArray(e["labels"]))) {
      const labels = examples.map((e) => ids(e, "labels"));
      const labelLen = Math.max(len, batchLength(labels, opts.padToMultipleOf));
      batch.labels = tensor(Int32Array.from(padTo(labels, -100, labelLen, side)), [b, labelLen]);
    } else if (examples.every((e) => typeof e["labels"] === "number" || typeof e["label"] === "number")) {
      batch.labels = tensor(Int32Array.from(examples.map((e) => (e["labels"] ?? e["label"]) as number)), [b]);
    }
    if (examples.every((e) => typeof e["task_ids"] === "number"))
      batch.taskIds = tensor(Int32Array.from(examples.map((e) => e["task_ids"] as number)), [b]);
    return batch;
  };
}

/** Pads inputs for classification (HF's DataCollatorWithPadding): class labels under "label" or "labels". */
export function DataCollatorWithPadding(opts: PaddingOptions): DataCollator {
  return DataCollatorForSeq2Seq(opts);
}
