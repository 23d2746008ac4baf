/**
 * A size-bucketed pool of CPU buffers. A training step allocates the same sizes every step, so reusing freed
 * buffers avoids both the allocator's zero-filling of large ArrayBuffers and garbage-collector pressure.
 */
import type { DType, Storage, StorageData } from "./backend.js";
import { DTYPE_BYTES } from "./backend.js";
import { envNumber } from "./env.js";

/** A storage whose values live in a typed array on the host. */
export class CpuStorage implements Storage {
  readonly size: number;
  constructor(
    readonly dtype: DType,
    readonly data: StorageData,
  ) {
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

  constructor(private limitBytes = DEFAULT_POOL_LIMIT) {}

  /** Keep at most `bytes` of free buffers from now on (those held beyond it are dropped). */
  setLimit(bytes: number): void {
    this.limitBytes = bytes;
    if (this.bytes > bytes) this.clear();
  }

  /** A storage of `size` elements, reused when one is free. */
  take(dtype: DType, size: number): CpuStorage {
    const bucket = this.free.get(key(dtype, size));
    const reused = bucket?.pop();
    if (reused) {
      this.bytes -= size * DTYPE_BYTES[dtype];
      return reused;
    }
    return new CpuStorage(dtype, newArray(dtype, size));
  }

  /** Return a storage for reuse (dropped when the pool is full). */
  give(storage: Storage): void {
    const bytes = storage.size * DTYPE_BYTES[storage.dtype];
    if (!(storage instanceof CpuStorage) || this.bytes + bytes > this.limitBytes) return;
    const k = key(storage.dtype, storage.size);
    const bucket = this.free.get(k);
    if (bucket) bucket.push(storage);
    else this.free.set(k, [storage]);
    this.bytes += bytes;
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

/** A zero-filled typed array for `size` elements of dtype. */
export function newArray(dtype: DType, size: number): StorageData {
  switch (dtype) {
    case "float32":
      return new Float32Array(size);
    case "int32":
      return new Int32Array(size);
    case "bfloat16":
    case "float16":
      return new Uint16Array(size);
    case "uint8":
      return new Uint8Array(size);
  }
}

/** What both CPU backends share: storages come from, and go back to, their own StoragePool. */
export abstract class PooledBackend {
  protected readonly pool = new StoragePool();

  /** A storage of `size` elements, reused from the pool when one of that size is free. */
  alloc(dtype: DType, size: number): Storage {
    return this.pool.take(dtype, size);
  }
  /** Give a storage back for reuse. */
  release(storage: Storage): void {
    this.pool.give(storage);
  }
  /** Drop every pooled buffer. */
  trimPool(): void {
    this.pool.clear();
  }
  /** Bytes held by the pool. */
  pooledBytes(): number {
    return this.pool.bytes;
  }
  /** Keep at most `bytes` of freed buffers. */
  setPoolLimit(bytes: number): void {
    this.pool.setLimit(bytes);
  }
}
