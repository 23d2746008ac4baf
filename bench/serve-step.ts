/**
 * Time the decode engine's steps without HTTP: N requests submitted together on a random GPT-2-small- or
 * Qwen2-0.5B-shaped model (optionally over LoRA adapters), reported as milliseconds per decode step at that batch
 * size, in wall time and in this process's CPU time (steadier on a shared machine; run with PEFT_TS_THREADS=1 to
 * compare changes). With PEFT_TS_PROFILE=1 it prints the per-kernel profile of the decode steps.
 *
 *   node dist/bench/serve-step.js --model gpt2 --batch 1,8 [--adapters 0] [--prompt 16] [--new 16] [--dtype float32]
 *     [--nf4]   (the Linear layers in NF4 with double quantisation, computed in --dtype when it is bfloat16)
 */
import { isProfiling, profileReport, profileReset } from "../src/backend/index.js";
import type { ParameterDType } from "../src/nn/index.js";
import { DecodeEngine } from "../src/serve/engine.js";
import { CONFIGS } from "./models.js";
import { randomServedModel } from "./serve-model.js";

const argv = process.argv.slice(2);
const opt = (name: string, fallback: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : fallback;
};
const config = CONFIGS[opt("model", "gpt2") as "gpt2" | "qwen2"];
const adapters = Number(opt("adapters", "0"));
const promptLength = Number(opt("prompt", "16")),
  newTokens = Number(opt("new", "16"));
const dtype = opt("dtype", "float32") as ParameterDType;
const nf4 = argv.includes("--nf4")
  ? {
      load_in_4bit: true,
      bnb_4bit_quant_type: "nf4" as const,
      bnb_4bit_use_double_quant: true,
      bnb_4bit_compute_dtype: dtype === "bfloat16" ? "bfloat16" : "float32",
    }
  : undefined;
const engine = new DecodeEngine(randomServedModel(config, adapters, dtype, nf4));

/** Run `batch` requests together; returns wall ms of the whole run and of its decode steps. */
async function run(batch: number): Promise<{ wall: number; steps: number; cpuSteps: number }> {
  const start = performance.now();
  let firstTokens = 0,
    decodeStart = 0,
    cpuStart = process.cpuUsage();
  const seqs = Array.from({ length: batch }, (_, i) =>
    engine.submit({
      promptIds: Array.from({ length: promptLength }, (_, k) => (i * 31 + k * 7 + 3) % 1000),
      adapter: adapters > 0 ? `a${i % adapters}` : "__base__",
      maxNewTokens: newTokens,
      ignoreEos: true,
      onToken: () => {
        if (++firstTokens !== batch) return;
        decodeStart = performance.now();
        cpuStart = process.cpuUsage();
      },
    }),
  );
  await Promise.all(seqs.map((s) => s.done));
  const end = performance.now();
  const cpu = process.cpuUsage(cpuStart);
  return {
    wall: end - start,
    steps: (end - decodeStart) / (newTokens - 1),
    cpuSteps: (cpu.user + cpu.system) / 1000 / (newTokens - 1),
  };
}

await run(1); // warm-up
for (const batch of opt("batch", "1,8").split(",").map(Number)) {
  await run(batch);
  profileReset();
  const { wall, steps, cpuSteps } = await run(batch);
  console.log(
    `batch ${batch}: ${wall.toFixed(0)} ms for ${batch}×${newTokens} tokens, prefill+first ${(wall - steps * (newTokens - 1)).toFixed(0)} ms, ${steps.toFixed(1)} ms per decode step (CPU ${cpuSteps.toFixed(1)} ms), ${((batch * newTokens * 1000) / wall).toFixed(1)} tokens/s`,
  );
  if (isProfiling()) console.log(profileReport({ wallMs: wall, top: 25, title: `profile of batch ${batch}` }));
}
