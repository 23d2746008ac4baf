/**
 * A cheap optional profiler: with PEFT_TS_PROFILE=1 (or after `setProfiling(true)`), every backend kernel call is
 * timed (self time, keyed by kernel and op, e.g. "binary add", "gemm 512x768x2304") and the autograd tape times each
 * op's backward function (inclusive of the kernels it calls, keyed "backward <op>"). `profileReport()` prints the
 * table. Off, it costs one boolean test per backend selection: the backend is only wrapped when profiling is on.
 */
import type { Backend } from "./backend.js";
import { envChoice } from "./env.js";

interface Entry {
  calls: number;
  ms: number;
}

const table = new Map<string, Entry>();
/** PEFT_TS_PROFILE: "0" (or unset) off, "1" on, "2" on with element-wise kernels keyed by shape too. */
const level =
  typeof process !== "undefined" ? envChoice("PEFT_TS_PROFILE", ["0", "1", "2"], "the profiler level") : undefined;
let enabled = level === "1" || level === "2";

/** Whether the profiler records. */
export function isProfiling(): boolean {
  return enabled;
}

/** Turn recording on or off (a backend chosen before turning it on is not wrapped: call setBackend again). */
export function setProfiling(on: boolean): void {
  enabled = on;
}

/** Add one timed call to an entry. */
export function profileAdd(name: string, ms: number): void {
  const e = table.get(name);
  if (e) {
    e.calls++;
    e.ms += ms;
  } else {
    table.set(name, { calls: 1, ms });
  }
}

/** Forget everything recorded. */
export function profileReset(): void {
  table.clear();
}

/** The recorded entries, slowest first. */
export function profileEntries(): { name: string; calls: number; ms: number }[] {
  return [...table.entries()].map(([name, e]) => ({ name, ...e })).sort((a, b) => b.ms - a.ms);
}

/**
 * A table of the entries: kernels (self time; their sum is the time spent inside backend kernels) and
 * "backward …" entries (inclusive). `wallMs`, when given, adds the share of that wall time outside kernels.
 */
export function profileReport(opts: { wallMs?: number; top?: number; title?: string } = {}): string {
  const rows = profileEntries();
  const kernels = rows.filter((r) => !r.name.startsWith("backward "));
  const kernelMs = kernels.reduce((s, r) => s + r.ms, 0);
  const lines: string[] = [];
  if (opts.title) lines.push(opts.title);
  const fmt = (r: { name: string; calls: number; ms: number }, share: number) =>
    `  ${r.name.padEnd(44)} ${String(r.calls).padStart(7)} ${r.ms.toFixed(1).padStart(10)} ` +
    `${share.toFixed(1).padStart(6)}%`;
  lines.push(`  ${"kernel (self time)".padEnd(44)} ${"calls".padStart(7)} ${"ms".padStart(10)} ${"share".padStart(7)}`);
  for (const r of kernels.slice(0, opts.top ?? 40)) lines.push(fmt(r, (100 * r.ms) / Math.max(kernelMs, 1e-9)));
  lines.push(
    `  ${"all kernels".padEnd(44)} ` +
      `${String(kernels.reduce((s, r) => s + r.calls, 0)).padStart(7)} ` +
      `${kernelMs.toFixed(1).padStart(10)}`,
  );
  if (opts.wallMs !== undefined) {
    lines.push(
      `  ${"outside kernels (JS, allocation, GC)".padEnd(44)} ${"".padStart(7)} ` +
        `${(opts.wallMs - kernelMs).toFixed(1).padStart(10)} ` +
        `${((100 * (opts.wallMs - kernelMs)) / opts.wallMs).toFixed(1).padStart(6)}% of wall`,
    );
  }
  const bwd = rows.filter((r) => r.name.startsWith("backward "));
  if (bwd.length > 0) {
    const bwdMs = bwd.reduce((s, r) => s + r.ms, 0);
    lines.push(`  ${"backward functions (inclusive)".padEnd(44)} ${"calls".padStart(7)} ${"ms".padStart(10)}`);
    for (const r of bwd.slice(0, opts.top ?? 40)) lines.push(fmt(r, (100 * r.ms) / Math.max(bwdMs, 1e-9)));
  }
  return lines.join("\n");
}

const detail = level === "2";

function keyOf(method: string, args: unknown[]): string {
  switch (method) {
    case "unary":
    case "unaryGrad":
    case "binary":
    case "reduce":
      return `${method} ${String(args[0])}${detail ? ` [${(args[1] as { shape: number[] }).shape.join(",")}]` : ""}`;
    case "copy":
      return `copy${detail ? ` [${(args[0] as { shape: number[] }).shape.join(",")}]` : ""}`;
    case "fill":
      return `fill${detail ? ` ${(args[0] as { size: number }).size}` : ""}`;
    case "gemm": {
      const g = args[0] as {
        m: number;
        n: number;
        k: number;
        batchShape: readonly number[];
        accumulate: boolean;
        transA: boolean;
        transB: boolean;
      };
      const batch = g.batchShape.reduce((a, b) => a * b, 1);
      return (
        `gemm ` +
        `${batch > 1 ? `${batch}×` : ""}${g.m}x${g.k}x${g.n}${g.transA ? " tA" : ""}${g.transB ? " tB" : ""}${g.accumulate ? " +=" : ""}`
      );
    }
    case "softmax":
      return `${method}${args[3] ? " log" : ""}`;
    case "softmaxGrad":
      return `${method}${args[4] ? " log" : ""}`;
    default:
      return method;
  }
}

const UNTIMED = new Set(["name", "alloc", "release", "pooledBytes", "setPoolLimit", "read", "write"]);

/** The backend with every kernel call timed into the profile table. */
export function profiledBackend(b: Backend): Backend {
  return new Proxy(b, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== "function" || typeof prop !== "string" || UNTIMED.has(prop)) {
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      }
      return (...args: unknown[]) => {
        if (!enabled) return (v as (...a: unknown[]) => unknown).apply(target, args);
        const t0 = performance.now();
        try {
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        } finally {
          profileAdd(keyOf(prop, args), performance.now() - t0);
        }
      };
    },
  });
}
