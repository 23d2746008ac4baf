/**
 * Mixed-adapter batches (peft's adapter_names): logits equal Python peft 0.15.2's mixed-batch forward
 * (test/fixtures/mixed-batch, made by scripts/make_mixed_batch_fixtures.py), each row equals that row run alone with
 * its adapter (or the plain base model), per-row greedy generation equals each request generated alone, and
 * misuse (unknown adapter, wrong row count, merged adapters) is a ConfigError.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fromPretrained } from "../src/models/auto.js";
import type { ModelOutput } from "../src/models/outputs.js";
import { PeftModel } from "../src/peft/index.js";
import { ConfigError } from "../src/errors.js";
import { loadSafetensors } from "../src/io/safetensors.js";
import { type Tensor, noGrad, tensor, tidy } from "../src/tensor/index.js";

const ROOT = fileURLToPath(new URL("../../test/fixtures/mixed-batch/", import.meta.url));
const ROWS = ["left", "__base__", "right", "left"];

function load(name: string): PeftModel {
  const dir = join(ROOT, name);
  const peft = PeftModel.fromPretrained(
    fromPretrained(join(dir, "model"), "causal-lm"),
    join(dir, "adapters", "left"),
    { adapterName: "left" },
  );
  peft.loadAdapter(join(dir, "adapters", "right"), "right");
  return peft.eval() as PeftModel;
}

function expected(name: string): { ids: Tensor; logits: Float32Array } {
  const t = loadSafetensors(join(ROOT, name, "expected.safetensors"));
  return { ids: t.get("input_ids")!, logits: Float32Array.from(t.get("logits")!.dataSync()) };
}

const rowOf = (t: Tensor, r: number): Tensor =>
  tensor(Int32Array.from(t.dataSync()).subarray(r * t.shape[1]!, (r + 1) * t.shape[1]!), [1, t.shape[1]!], "int32");
/** The model with one adapter active, as running a request alone does. */
function activated(peft: PeftModel, adapter: string): PeftModel {
  peft.setAdapter(adapter);
  return peft;
}
const logitsOf = (run: () => ModelOutput) => tidy(() => Float32Array.from(noGrad(run).logits.dataSync()));

function assertClose(actual: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(actual.length, want.length, what);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - want[i]!));
  assert.ok(worst <= tol, `${what}: max |diff| ${worst} > ${tol}`);
}

for (const name of ["gpt2", "llama"]) {
  describe(`mixed-adapter batch: ${name}`, () => {
    const peft = load(name);
    const { ids, logits } = expected(name);

    it("logits equal Python peft's forward with adapter_names", () => {
      assertClose(
        logitsOf(() => peft.forward({ inputIds: ids, adapterNames: ROWS })),
        logits,
        1e-4,
        "logits",
      );
      assert.deepEqual(peft.activeAdapters, ["left"]);
    });

    it("each row equals that row run alone with its adapter, or the base model alone", () => {
      const mixed = logitsOf(() => peft.forward({ inputIds: ids, adapterNames: ROWS }));
      const base = fromPretrained(join(ROOT, name, "model"), "causal-lm").eval();
      const per = mixed.length / ROWS.length;
      ROWS.forEach((adapter, r) => {
        const alone =
          adapter === "__base__"
            ? logitsOf(() => base.forward({ inputIds: rowOf(ids, r) }) as ModelOutput)
            : logitsOf(() => activated(peft, adapter).forward({ inputIds: rowOf(ids, r) }));
        assertClose(mixed.subarray(r * per, (r + 1) * per), alone, 1e-5, `row ${r} (${adapter})`);
      });
      peft.setAdapter("left");
    });

    it("per-row greedy generation equals each request generated alone", () => {
      const mixed = Array.from(
        peft.generate({ inputIds: ids, adapterNames: ROWS, maxNewTokens: 8, eosTokenId: -1 }).dataSync(),
      );
      const width = mixed.length / ROWS.length;
      ROWS.forEach((adapter, r) => {
        const alone =
          adapter === "__base__"
            ? peft.generate({ inputIds: rowOf(ids, r), adapterNames: ["__base__"], maxNewTokens: 8, eosTokenId: -1 })
            : activated(peft, adapter).generate({ inputIds: rowOf(ids, r), maxNewTokens: 8, eosTokenId: -1 });
        assert.deepEqual(
          mixed.slice(r * width, (r + 1) * width),
          Array.from(alone.dataSync()),
          `row ${r} (${adapter})`,
        );
      });
      peft.setAdapter("left");
    });

    it("an unknown adapter, a wrong row count or merged adapters are ConfigErrors", () => {
      assert.throws(
        () => peft.forward({ inputIds: ids, adapterNames: ["left", "nope", "right", "left"] }),
        (e: Error) => e instanceof ConfigError && /"nope"/.test(e.message),
      );
      assert.throws(
        () => peft.forward({ inputIds: ids, adapterNames: ["left", "right"] }),
        (e: Error) => e instanceof ConfigError && /2 entries but the batch has 4/.test(e.message),
      );
      peft.baseModel.capabilities.merge!.merge(["left"]);
      try {
        assert.throws(
          () => peft.forward({ inputIds: ids, adapterNames: ROWS }),
          (e: Error) => e instanceof ConfigError && /merged/.test(e.message),
        );
      } finally {
        peft.baseModel.capabilities.merge!.unmerge();
      }
    });
  });
}
