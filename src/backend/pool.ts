/**
 * A size-bucketed pool of CPU buffers. A training step allocates the same sizes every step, so reusing freed
 * buffers avoids both the allocator's zero-filling of large ArrayBuffers and garbage-collector pressure.
 */
import type { DType, Storage } from "./backend.js";
import { envNumber } from "./env.js";

/** A storage whose values live in a typed array on the host. */
export class CpuStorage implements Storage {
  readonly size: number;
  constructor(readonly dtype: DType, readonly data: Float32Array | Int32Array) {
    this.size = data.length;
  }
}

/** Pooled buffers above this many bytes are dropped instead of kept (PEFT_TS_POOL_MB overrides). */
const DEFAULT_POOL_LIMIT = (envNumber("PEFT_TS_POOL_MB", "the buffer pool's limit in MiB") ?? 2048) * 2 ** 20;

/** Reuses buffers of exactly the same dtype and size. */
export class StoragePool {
  private readonly free = new Map<string, CpuStorage[]>();
  /** Bytes held by free buffers. */
  bytes = 0;

  constructor(private readonly limitBytes = DEFAULT_POOL_LIMIT) {}

  /** A storage of `size` elements, reused when one is free. */
  take(dtype: DType, size: number): CpuStorage {
    const bucket = this.free.get(key(dtype, size));
    const reused = bucket?.pop();
    if (reused) {
      this.bytes -= size * 4;
      return reused;
    }
    return new CpuStorage(dtype, dtype === "int32" ? new Int32Array(size) : new Float32Array(size));
  }

  /** Return a storage for reuse (dropped when the pool is full). */
  give(storage: Storage): void {
    if (!(storage instanceof CpuStorage) || this.bytes + storage.size * 4 > this.limitBytes) return;
    const k = key(storage.dtype, storage.size);
    let bucket = this.free.get(k);
    if (!bucket) this.free.set(k, (bucket = []));
    bucket.push(storage);
    this.bytes += storage.size * 4;
  }

  /** Drop every pooled buffer. */
  clear(): void {
    this.free.clear();
    this.bytes = 0;
  }
}

function key(dtype: DType, size: number): string {
  return `${dtype}:${size}`;
}
