/**
 * Datasets: lists of records loaded from JSON arrays or JSONL files, with the few operations fine-tuning needs
 * (map, filter, shuffle with a seed, split). Records stay plain objects.
 */
import { existsSync, readFileSync } from "node:fs";
import { Generator } from "../tensor/index.js";

/** One example: field name → value. */
export type Example = Record<string, unknown>;

/** An in-memory list of examples (HF datasets' Dataset, reduced to what training uses). */
export class Dataset<E extends Example = Example> {
  constructor(readonly examples: readonly E[]) {}

  /** Number of examples. */
  get length(): number {
    return this.examples.length;
  }

  /** The i-th example. */
  get(i: number): E {
    const e = this.examples[i];
    if (e === undefined) throw new RangeError(`example ${i} is out of range (the dataset has ${this.length})`);
    return e;
  }

  /** A new dataset with fn applied to every example. */
  map<F extends Example>(fn: (e: E, i: number) => F): Dataset<F> {
    return new Dataset(this.examples.map(fn));
  }

  /** Only the examples for which fn is true. */
  filter(fn: (e: E, i: number) => boolean): Dataset<E> {
    return new Dataset(this.examples.filter(fn));
  }

  /** The examples at the given indices. */
  select(indices: readonly number[]): Dataset<E> {
    return new Dataset(indices.map((i) => this.get(i)));
  }

  /** A reproducible shuffle (Fisher–Yates with the engine's seeded generator). */
  shuffle(seed = 42): Dataset<E> {
    return this.select(shuffledIndices(this.length, new Generator(seed)));
  }

  /** Split off a test set of `testSize` examples (a count, or a fraction when < 1), after a seeded shuffle. */
  trainTestSplit(testSize: number, seed = 42): { train: Dataset<E>; test: Dataset<E> } {
    const n = testSize < 1 ? Math.round(this.length * testSize) : testSize;
    if (n <= 0 || n >= this.length)
      throw new Error(`testSize ${testSize} leaves no training or no test examples out of ${this.length}`);
    const order = shuffledIndices(this.length, new Generator(seed));
    return { train: this.select(order.slice(n)), test: this.select(order.slice(0, n)) };
  }
}

/** A permutation of 0..n-1 drawn from a generator. */
export function shuffledIndices(n: number, gen: Generator): number[] {
  const order = [...Array(n).keys()];
  for (let i = n - 1; i > 0; i--) {
    const j = gen.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/** Load a JSON array of records or a JSONL file (one record per line); errors name the file and line. */
export function loadDataset(path: string): Dataset {
  if (!existsSync(path)) throw new Error(`dataset file ${path} does not exist`);
  const text = readFileSync(path, "utf8");
  const trimmed = text.trimStart();
  let records: unknown[];
  if (trimmed.startsWith("[")) {
    try {
      records = JSON.parse(text) as unknown[];
    } catch (err) {
      throw new Error(`${path} is not valid JSON: ${(err as Error).message}`);
    }
  } else {
    records = text.split("\n").flatMap((line, i) => {
      if (line.trim() === "") return [];
      try {
        return [JSON.parse(line) as unknown];
      } catch (err) {
        throw new Error(`${path}:${i + 1} is not a JSON record: ${(err as Error).message}`);
      }
    });
  }
  records.forEach((r, i) => {
    if (r === null || typeof r !== "object" || Array.isArray(r))
      throw new Error(`${path}: record ${i + 1} is not a JSON object`);
  });
  if (records.length === 0) throw new Error(`${path} holds no records`);
  return new Dataset(records as Example[]);
}
