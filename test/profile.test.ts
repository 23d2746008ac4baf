/** The profiler the README describes is reachable from the package's main entry: PEFT_TS_PROFILE=1 and profileReport(). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

test("PEFT_TS_PROFILE=1: profileReport() from the package entry lists the kernels a matrix product ran", async () => {
  const entry = new URL("../src/index.js", import.meta.url).href,
    tensors = new URL("../src/tensor/index.js", import.meta.url).href;
  const script = `
    const p = await import(${JSON.stringify(entry)});
    const T = await import(${JSON.stringify(tensors)});
    const a = T.tensor(new Float32Array(6).fill(1), [2, 3]), b = T.tensor(new Float32Array(12).fill(2), [3, 4]);
    const product = T.matmul(a, b).dataSync();
    console.log(JSON.stringify({ on: p.isProfiling(), first: product[0], report: p.profileReport({ title: "profile" }) }));`;
  const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], {
    env: { ...process.env, PEFT_TS_PROFILE: "1" },
  });
  const out = JSON.parse(stdout.trim()) as { on: boolean; first: number; report: string };
  assert.equal(out.on, true);
  assert.equal(out.first, 6, "1·2 summed over 3 terms");
  const lines = out.report.split("\n");
  assert.equal(lines[0], "profile");
  assert.ok(
    lines.some((l) => /^\s+gemm 2x3x4\s+1\s/.test(l)),
    `one 2×3×4 product in the table:\n${out.report}`,
  );
  assert.ok(
    lines.some((l) => l.trim().startsWith("all kernels")),
    out.report,
  );
});
