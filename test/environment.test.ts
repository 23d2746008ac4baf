/**
 * The backend's environment variables are checked: PEFT_TS_THREADS, PEFT_TS_ADAPTIVE_THREADS, PEFT_TS_BACKEND,
 * PEFT_TS_PROFILE and PEFT_TS_POOL_MB with a value outside their range stop the program with an EnvironmentError
 * naming the variable, the value and the accepted range, instead of being ignored. Each case runs in a child
 * process, since the variables are read once, when the backend loads.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cpus } from "node:os";
import { promisify } from "node:util";
import { threadLimit } from "../src/backend/native/native-backend.js";
import { nativeOrReason } from "./helpers.js";

const run = promisify(execFile);
const backendModule = new URL("../src/backend/index.js", import.meta.url).href;
const nativeModule = new URL("../src/backend/native/native-backend.js", import.meta.url).href;

const nativeError = nativeOrReason().loadError;

interface Outcome {
  ok?: { backend: string; threads?: number };
  error?: { name: string; code: string; message: string };
}

/** Loads the backend in a child process with `env` added; what it chose, or the error it threw. */
async function loadWith(env: Record<string, string>): Promise<Outcome> {
  const script = `
    try {
      const b = await import(${JSON.stringify(backendModule)});
      const chosen = b.backend();
      const threads = chosen.name === "native" ? (await import(${JSON.stringify(nativeModule)})).threads() : undefined;
      console.log(JSON.stringify({ ok: { backend: chosen.name, threads } }));
    } catch (e) {
      console.log(JSON.stringify({ error: { name: e.name, code: e.code, message: e.message } }));
    }`;
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PEFT_TS_")));
  const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], {
    env: { ...clean, ...env },
    timeout: 60e3,
  });
  return JSON.parse(stdout.trim()) as Outcome;
}

function assertRejected(o: Outcome, variable: string, value: string, range: RegExp): void {
  assert.ok(o.error, `${variable}=${value} should be rejected, got ${JSON.stringify(o.ok)}`);
  assert.equal(o.error.name, "EnvironmentError");
  assert.equal(o.error.code, "ENVIRONMENT_INVALID");
  assert.ok(
    o.error.message.includes(`${variable}=${JSON.stringify(value)}`),
    `the message names the variable and value: ${o.error.message}`,
  );
  assert.match(o.error.message, range);
}

test(
  "PEFT_TS_THREADS: 0, -1, abc, 1.5, 2x and values above 4 × the cores are rejected, naming " + "the range",
  async (t) => {
    if (nativeError) return t.skip(`native addon not built: ${nativeError}`);
    const limit = threadLimit();
    assert.equal(limit, 4 * cpus().length, "the limit is 4 threads per core");
    for (const value of ["0", "-1", "abc", "1.5", "2x", String(limit + 1), "1025"]) {
      assertRejected(
        await loadWith({ PEFT_TS_THREADS: value }),
        "PEFT_TS_THREADS",
        value,
        new RegExp(`integer from 1 to ${limit}\\b`),
      );
    }
  },
);

test("PEFT_TS_THREADS: 1 and the limit are accepted; unset or empty leaves the default", async (t) => {
  if (nativeError) return t.skip(`native addon not built: ${nativeError}`);
  assert.deepEqual((await loadWith({ PEFT_TS_THREADS: "1" })).ok, { backend: "native", threads: 1 });
  assert.deepEqual((await loadWith({ PEFT_TS_THREADS: String(threadLimit()) })).ok, {
    backend: "native",
    threads: threadLimit(),
  });
  const dflt = (await loadWith({ OMP_NUM_THREADS: "2" })).ok;
  assert.deepEqual(dflt, { backend: "native", threads: 2 }, "unset: OpenMP's default (OMP_NUM_THREADS)");
  assert.deepEqual((await loadWith({ PEFT_TS_THREADS: "", OMP_NUM_THREADS: "2" })).ok, dflt, "empty counts as unset");
});

test("PEFT_TS_ADAPTIVE_THREADS accepts 0 and 1 only", async (t) => {
  if (nativeError) return t.skip(`native addon not built: ${nativeError}`);
  for (const value of ["0", "1"])
    assert.equal((await loadWith({ PEFT_TS_ADAPTIVE_THREADS: value })).ok?.backend, "native");
  for (const value of ["yes", "off", "2"]) {
    assertRejected(
      await loadWith({ PEFT_TS_ADAPTIVE_THREADS: value }),
      "PEFT_TS_ADAPTIVE_THREADS",
      value,
      /one of "0", "1"/,
    );
  }
});

test("PEFT_TS_BACKEND accepts native and js only; a bad thread count is not hidden by the js fallback", async () => {
  assert.equal((await loadWith({ PEFT_TS_BACKEND: "js" })).ok?.backend, "js");
  assertRejected(await loadWith({ PEFT_TS_BACKEND: "cuda" }), "PEFT_TS_BACKEND", "cuda", /one of "native", "js"/);
  if (!nativeError) assertRejected(await loadWith({ PEFT_TS_THREADS: "0" }), "PEFT_TS_THREADS", "0", /integer from 1/);
});

test("PEFT_TS_PROFILE accepts 0, 1 and 2; PEFT_TS_POOL_MB a non-negative number", async () => {
  assert.ok((await loadWith({ PEFT_TS_PROFILE: "1", PEFT_TS_POOL_MB: "64" })).ok);
  assertRejected(await loadWith({ PEFT_TS_PROFILE: "on" }), "PEFT_TS_PROFILE", "on", /one of "0", "1", "2"/);
  assertRejected(await loadWith({ PEFT_TS_POOL_MB: "lots" }), "PEFT_TS_POOL_MB", "lots", /non-negative number/);
  assertRejected(await loadWith({ PEFT_TS_POOL_MB: "-5" }), "PEFT_TS_POOL_MB", "-5", /non-negative number/);
});
