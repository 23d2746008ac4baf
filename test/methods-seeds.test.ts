/**
 * Multitask prompt tuning against Python peft 0.15.2 (goldens of scripts/make_method_fixtures_seeds.py in
 * test/fixtures/methods-seeds): logits with the adapter on and off, greedy generation with task ids, the saved
 * adapter's keys, shapes and config fields, the source → target inits, and the prompts against P ⊙ (cols·rows)
 * written out here in float64. Adapters saved here go to $PEFT_TS_ADAPTERS for the script's --check-ts-adapters.
 *
 * Tolerance: the goldens are float32 torch outputs of the same model; 1e-4 absolute on O(1) logits allows for the
 * different summation orders of the two engines.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { fromPretrained } from "../src/models/auto.js";
import type { ModelOutput } from "../src/models/outputs.js";
import { MultitaskPromptTuningConfig, PeftModel, getPeftModel, type PromptLearningModel } from "../src/peft/index.js";
import { loadSafetensors, writeSafetensors } from "../src/io/safetensors.js";
import { AdamW } from "../src/optim/index.js";
import { ConfigError } from "../src/errors.js";
import * as T from "../src/tensor/index.js";
import { GoldenSet, REFERENCE_SET, readExpected, maxAbsDiff } from "./golden.js";
import { assertClose, assertSame, tempDirs, values } from "./helpers.js";
import { LLAMA, gpt2 } from "./tiny-models.js";
import { cliWorkspace, trainMethod } from "./cli-workspace.js";

const SEEDS = new GoldenSet(fileURLToPath(new URL("../../test/fixtures/methods-seeds/", import.meta.url)));
const SOURCE = SEEDS.peftDir("gpt2-mpt-source");
const SOURCE_FILE = join(SOURCE, "adapter", "adapter_model.safetensors");
const dirs = tempDirs("peft-ts-mpt-");
after(() => dirs.removeAll());

type Case = {
  input_ids: number[][];
  task_ids: number[];
  gen_input_ids?: number[][];
  max_new_tokens?: number;
  config: Record<string, unknown>;
  adapter_tensors?: Record<string, [number[], string]>;
  adapter_config_keys?: string[];
};
const readCase = (dir: string) => JSON.parse(readFileSync(join(dir, "case.json"), "utf8")) as Case;
const ids = (rows: number[][]) => T.tensor(Int32Array.from(rows.flat()), [rows.length, rows[0]!.length]);
const tasks = (t: number[]) => T.tensor(Int32Array.from(t), [t.length]);
const base = () => fromPretrained(REFERENCE_SET.modelDir("gpt2"), "causal-lm");

function logitsOf(model: PeftModel, c: Case): T.Tensor {
  return T.noGrad(() => model.forward({ inputIds: ids(c.input_ids), taskIds: tasks(c.task_ids) }).logits);
}

describe("multitask prompt tuning against peft 0.15.2", () => {
  const c = readCase(SOURCE);
  const expected = readExpected(SOURCE);

  it(
    "a peft adapter gives peft's logits with the adapter on (per-row tasks) and off, and " + "peft's greedy generation",
    () => {
      const model = PeftModel.fromPretrained(base(), join(SOURCE, "adapter"));
      assert.ok(maxAbsDiff(logitsOf(model, c), expected.get("logits_adapter")!) < 1e-4);
      model.base_model.setAdaptersDisabled(true);
      assert.ok(maxAbsDiff(logitsOf(model, c), expected.get("logits_disabled")!) < 1e-4);
      model.base_model.setAdaptersDisabled(false);
      const gen = model.generate({
        inputIds: ids(c.gen_input_ids!),
        taskIds: tasks(c.task_ids),
        maxNewTokens: c.max_new_tokens!,
        doSample: false,
      });
      assert.deepEqual(values(gen), values(expected.get("generate_ids")!));
    },
  );

  it("the prompts are P ⊙ (cols[task] · rows[task]), written out in float64", () => {
    const model = PeftModel.fromPretrained(base(), join(SOURCE, "adapter"));
    const file = loadSafetensors(SOURCE_FILE);
    const P = values(file.get("prompt_embeddings")!),
      cols = values(file.get("prefix_task_cols")!),
      rows = values(file.get("prefix_task_rows")!);
    const [, V, R] = file.get("prefix_task_cols")!.shape as [number, number, number];
    const D = file.get("prompt_embeddings")!.shape[1]!;
    const prompts = values(T.noGrad(() => (model.base_model as PromptLearningModel).prompts(2, tasks([2, 0]))));
    const want = [2, 0].flatMap((t) =>
      Array.from({ length: V * D }, (_, i) => {
        const v = Math.floor(i / D),
          d = i % D;
        let f = 0;
        for (let r = 0; r < R; r++) f += cols[(t * V + v) * R + r]! * rows[(t * R + r) * D + d]!;
        return P[i]! * f;
      }),
    );
    assertClose(prompts, want, 1e-5, 1e-5);
  });

  it("saves the tensors and config fields peft saves, reloads exactly, and the adapters load in Python peft", () => {
    const model = PeftModel.fromPretrained(base(), join(SOURCE, "adapter"));
    const dir = dirs.make();
    model.savePretrained(dir);
    const saved = loadSafetensors(join(dir, "adapter_model.safetensors"));
    assert.deepEqual(Object.fromEntries([...saved].map(([k, t]) => [k, [t.shape, t.dtype]])), c.adapter_tensors);
    const source = loadSafetensors(SOURCE_FILE);
    for (const [k, t] of saved) assertSame(values(t), values(source.get(k)!), k);
    const config = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")) as Record<string, unknown>;
    assert.deepEqual(Object.keys(config).sort(), c.adapter_config_keys);
    assert.equal(config["num_tasks"], 3);
    assert.equal(config["num_ranks"], 2);
    const reloaded = PeftModel.fromPretrained(base(), dir);
    assertSame(values(logitsOf(reloaded, c)), values(logitsOf(model, c)), "reloaded");
    // A freshly made adapter, trained a step, for the Python check.
    const fresh = getPeftModel(
      base(),
      MultitaskPromptTuningConfig({ task_type: "CAUSAL_LM", num_virtual_tokens: 4, num_tasks: 3, num_ranks: 2 }),
    );
    fresh.train();
    const opt = new AdamW(
      fresh.parameters().filter((p) => p.requiresGrad),
      { lr: 0.5 },
    );
    T.tidy(() => {
      fresh
        .forward({ inputIds: ids(c.input_ids), labels: ids(c.input_ids), taskIds: tasks(c.task_ids) })
        .loss!.backward();
      opt.step();
    });
    fresh.eval();
    const out = process.env["PEFT_TS_ADAPTERS"] ?? dirs.make();
    const target = join(out, "mpt-fresh");
    mkdirSync(target, { recursive: true });
    fresh.savePretrained(target);
    writeSafetensors(join(target, "logits.safetensors"), new Map([["logits", logitsOf(fresh, c)]]));
    writeFileSync(join(target, "task_ids.json"), JSON.stringify(c.task_ids));
    const back = PeftModel.fromPretrained(base(), target);
    assertSame(values(logitsOf(back, c)), values(logitsOf(fresh, c)), "fresh adapter reloaded");
  });

  for (const name of ["gpt2-mpt-target-exact", "gpt2-mpt-target-average"]) {
    it(`${name}: the source → target start matches peft`, () => {
      const t = readCase(SEEDS.peftDir(name));
      const want = readExpected(SEEDS.peftDir(name));
      const model = getPeftModel(
        base(),
        MultitaskPromptTuningConfig({ ...t.config, prompt_tuning_init_state_dict_path: SOURCE_FILE } as never),
      );
      model.eval();
      const saved = model.base_model.saveAdapter("default").tensors;
      for (const k of ["prompt_embeddings", "prefix_task_cols", "prefix_task_rows"])
        assertClose(values(saved.get(k)!), values(want.get(k)!), 1e-6, 0, k); // the average: one float32 rounding apart
      assert.ok(maxAbsDiff(logitsOf(model, t), want.get("logits_adapter")!) < 1e-4);
      // One task: task ids may be left out.
      const noIds = T.noGrad(() => (model.forward({ inputIds: ids(t.input_ids) }) as ModelOutput).logits);
      assert.ok(maxAbsDiff(noIds, want.get("logits_adapter")!) < 1e-4);
    });
  }

  it("ONLY_SOURCE_SHARED takes the source's shared prompt only; bad task ids and sources are refused by name", () => {
    const model = getPeftModel(
      base(),
      MultitaskPromptTuningConfig({
        task_type: "CAUSAL_LM",
        num_virtual_tokens: 4,
        num_ranks: 2,
        num_tasks: 2,
        prompt_tuning_init: "ONLY_SOURCE_SHARED",
        prompt_tuning_init_state_dict_path: SOURCE_FILE,
      }),
    );
    const saved = model.base_model.saveAdapter("default").tensors;
    assertSame(
      values(saved.get("prompt_embeddings")!),
      values(loadSafetensors(SOURCE_FILE).get("prompt_embeddings")!),
      "shared prompt",
    );
    assert.deepEqual(saved.get("prefix_task_cols")!.shape, [2, 4, 2]);
    assert.throws(
      () => model.forward({ inputIds: ids(c.input_ids) }),
      (e: Error) => e instanceof ConfigError && /needs taskIds/.test(e.message),
    );
    assert.throws(() => model.forward({ inputIds: ids(c.input_ids), taskIds: tasks([0, 5]) }), /num_tasks 2/);
    assert.throws(
      () => MultitaskPromptTuningConfig({ prompt_tuning_init: "EXACT_SOURCE_TASK" }),
      /prompt_tuning_init_state_dict_path needs to be specified/,
    );
    assert.throws(
      () =>
        getPeftModel(
          base(),
          MultitaskPromptTuningConfig({
            task_type: "CAUSAL_LM",
            num_virtual_tokens: 4,
            num_ranks: 3,
            num_tasks: 1,
            prompt_tuning_init: "EXACT_SOURCE_TASK",
            prompt_tuning_init_state_dict_path: SOURCE_FILE,
          }),
        ),
      /shape/,
    );
  });

  it("learns a toy task with per-row tasks", () => {
    const model = getPeftModel(
      gpt2(11, { initializer_range: 0.3 }),
      MultitaskPromptTuningConfig({ task_type: "CAUSAL_LM", num_virtual_tokens: 4, num_tasks: 2, num_ranks: 2 }),
    );
    model.train();
    const cycle = [5, 9, 13, 21];
    const x = T.tensor(
      Int32Array.from({ length: 4 * 16 }, (_, i) => cycle[(Math.floor(i / 16) + i) % 4]!),
      [4, 16],
    );
    const opt = new AdamW(
      model.parameters().filter((p) => p.requiresGrad),
      { lr: 0.1 },
    );
    const losses: number[] = [];
    for (let s = 0; s < 40; s++) {
      losses.push(
        T.tidy(() => {
          const loss = model.forward({ inputIds: x, labels: x, taskIds: tasks([0, 1, 0, 1]) }).loss!;
          loss.backward();
          opt.step();
          opt.zeroGrad();
          return loss.item();
        }),
      );
    }
    assert.ok(losses[39]! < 0.75 * losses[0]!, `loss ${losses[0]} → ${losses[39]}`);
  });
});

describe("peft CLI with multitask prompt tuning", () => {
  it("`peft train` trains a one-task (target-stage) adapter, and `peft generate` uses it", () => {
    const ws = cliWorkspace("peft-ts-mpt-cli-", LLAMA);
    trainMethod(ws, "MULTITASK_PROMPT_TUNING", { num_virtual_tokens: 4, num_ranks: 2 });
    const gen = ws.run(
      "generate",
      "--model",
      "model",
      "--adapter",
      "out-MULTITASK_PROMPT_TUNING",
      "--prompt",
      "say hello",
      "--max-new-tokens",
      "3",
    );
    assert.equal(gen.status, 0, `peft generate failed:\n${gen.stderr}`);
  });
});
