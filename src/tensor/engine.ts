/**
 * Memory and gradient-mode bookkeeping.
 *
 * Memory model (deterministic, like TensorFlow.js' tidy): every tensor is registered in the innermost open
 * scope when it is created. When `tidy(fn)` returns, each tensor created inside it is disposed, except the
 * tensors in fn's result (handed to the enclosing scope) and tensors marked with `keep` (parameters, gradients,
 * optimizer state). Views share a reference-counted buffer, so a storage returns to the backend's pool when the
 * last tensor on it is disposed. Tensors created outside every scope live until `dispose()` (or garbage
 * collection, which also gives their bytes back to the accounting).
 */
import type { Backend, Storage } from "../backend/backend.js";
import { DTYPE_BYTES } from "../backend/backend.js";

/** A storage shared by a tensor and its views. */
export class Buffer {
  private refs = 0;
  private released = false;
  private readonly bytes: number;

  constructor(
    readonly storage: Storage,
    readonly backend: Backend,
  ) {
    stats.liveStorages++;
    this.bytes = storage.size * DTYPE_BYTES[storage.dtype];
    stats.liveBytes += this.bytes;
    stats.peakBytes = Math.max(stats.peakBytes, stats.liveBytes);
    finalizer.register(this, { bytes: this.bytes }, this);
  }

  /** Another tensor now points at this buffer. */
  retain(): void {
    this.refs++;
  }

  /** A tensor on this buffer was disposed; the last one gives the storage back to the pool. */
  releaseRef(): void {
    if (--this.refs > 0 || this.released) return;
    this.released = true;
    finalizer.unregister(this);
    stats.liveStorages--;
    stats.liveBytes -= this.bytes;
    this.backend.release(this.storage);
  }
}

/** Storages and bytes currently alive. */
export interface MemoryStats {
  liveStorages: number;
  liveBytes: number;
  /** Highest liveBytes seen since the last `resetPeakBytes()`. */
  peakBytes: number;
}

const stats: MemoryStats = { liveStorages: 0, liveBytes: 0, peakBytes: 0 };

// A buffer dropped without dispose (outside every scope) is collected by V8; keep the accounting true.
const finalizer = new FinalizationRegistry<{ bytes: number }>(({ bytes }) => {
  stats.liveStorages--;
  stats.liveBytes -= bytes;
});

/** Live storage count and bytes, for tests and benchmarks. */
export function memory(): Readonly<MemoryStats> {
  return { ...stats };
}

/** Start measuring peak bytes from the current live bytes. */
export function resetPeakBytes(): void {
  stats.peakBytes = stats.liveBytes;
}

/** Something that holds backend memory and can give it back. */
export interface Disposable {
  dispose(): void;
  readonly isDisposed: boolean;
}

const scopes: Set<Disposable>[] = [];

/** Register a new tensor in the innermost scope (no-op outside scopes). */
export function track(t: Disposable): void {
  scopes[scopes.length - 1]?.add(t);
}

/** Exclude tensors from automatic disposal by the enclosing scopes; returns its argument. */
export function keep<T extends Disposable>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

/**
 * Run fn inside a memory scope: tensors created in it are disposed when it returns, except those reachable
 * from its result (arrays and plain objects are searched) and kept ones. Works with async functions too.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Disposable>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (err) {
    closeScope(scope, undefined);
    throw err;
  }
  if (result instanceof Promise) {
    throw new Error("tidy(fn) needs a synchronous fn: an async fn would leave the scope before its tensors exist");
  }
  closeScope(scope, result);
  return result;
}

function closeScope(scope: Set<Disposable>, result: unknown): void {
  const popped = scopes.pop();
  if (popped !== scope) throw new Error("tidy scopes were closed out of order");
  const survivors = new Set<Disposable>();
  collectDisposables(result, survivors, 0);
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (survivors.has(t)) parent?.add(t);
    else t.dispose();
  }
}

function collectDisposables(value: unknown, into: Set<Disposable>, depth: number): void {
  if (value === null || typeof value !== "object" || depth > 8) return;
  if ("dispose" in value && "isDisposed" in value) {
    into.add(value as Disposable);
    return;
  }
  if (value instanceof Map) {
    for (const v of value.values()) collectDisposables(v, into, depth + 1);
    return;
  }
  if (Array.isArray(value) || Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collectDisposables(v, into, depth + 1);
  }
}

let gradEnabled = true;

/** Whether operations currently record the autograd tape. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** The 16-bit formats mixed precision computes matrix products in. */
export type AutocastDType = "bfloat16" | "float16";

let autocastFormat: AutocastDType | null = null;

/**
 * Run fn with mixed precision (torch.autocast): matrix products round their float32 inputs to `dtype` and accumulate
 * in float32, in forward and in the backward passes of the products recorded inside; everything else stays float32.
 * null runs fn in full precision.
 */
export function autocast<T>(dtype: AutocastDType | null, fn: () => T): T {
  const before = autocastFormat;
  autocastFormat = dtype;
  try {
    return fn();
  } finally {
    autocastFormat = before;
  }
}

/** The format matrix products round their inputs to now, or null (full precision). */
export function autocastDtype(): AutocastDType | null {
  return autocastFormat;
}

/** Run fn recording gradients even inside noGrad (PyTorch's enable_grad; gradient checkpointing recomputes with it). */
export function withGrad<T>(fn: () => T): T {
  return withGradMode(true, fn);
}

/** Run fn without recording gradients (inference, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

function withGradMode<T>(enabled: boolean, fn: () => T): T {
  const before = gradEnabled;
  gradEnabled = enabled;
  try {
    return fn();
  } finally {
    gradEnabled = before;
  }
}
