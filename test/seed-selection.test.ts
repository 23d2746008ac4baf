/**
 * BitFit and Freeze (parameter-selection methods) on the tiny GPT-2 of tiny-models.ts. Expected values are
 * independent of the code under test: parameter counts and names worked out from the GPT-2 config by hand
 * (width 32, 2 layers, MLP width 128), the base model's own logits, and a plain gradient step written out here.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { BitFitConfig, FreezeConfig, PeftModel, TaskType, getPeftModel, configFromJson } from "../src/peft/index.js";
import { loadSafetensors } from "../src/io/safetensors.js";
import { readJsonObject } from "../src/io/json.js";
import { SGD } from "../src/optim/index.js";
import { ConfigError, CheckpointError } from "../src/errors.js";
import * as T from "../src/tensor/index.js";
import { assertSame, tempDirs, values } from "./helpers.js";
import { IDS, LLAMA, gpt2, llama, logits, trainToy } from "./tiny-models.js";
import { cliWorkspace, trainMethod } from "./cli-workspace.js";

const dirs = tempDirs("peft-ts-selection-");
after(() => dirs.removeAll());

/** Every bias of the tiny GPT-2 with its size, by hand: per layer ln_1, c_attn (3·32), attn.c_proj, ln_2, c_fc (4·32), mlp.c_proj; then ln_f. */
const GPT2_BIASES: [string, number][] = [
  ...[0, 1].flatMap((l): [string, number][] => [
    [`transformer.h.${l}.ln_1.bias`, 32],
    [`transformer.h.${l}.attn.c_attn.bias`, 96],
    [`transformer.h.${l}.attn.c_proj.bias`, 32],
    [`transformer.h.${l}.ln_2.bias`, 32],
    [`transformer.h.${l}.mlp.c_fc.bias`, 128],
    [`transformer.h.${l}.mlp.c_proj.bias`, 32],
  ]),
  ["transformer.ln_f.bias", 32],
];
/** One GPT-2 layer's parameter count by hand: two layer norms (2·32 each), c_attn 32·96 + 96, c_proj 32·32 + 32, c_fc 32·128 + 128, c_proj 128·32 + 32. */
const GPT2_LAYER = 2 * 64 + (32 * 96 + 96) + (32 * 32 + 32) + (32 * 128 + 128) + (128 * 32 + 32);

/** A toy task a few parameters can learn: 4 rows cycling through 4 tokens from different starting points. */
function cycleIds(): T.Tensor {
  const cycle = [5, 9, 13, 21];
  return T.tensor(
    Int32Array.from({ length: 4 * 16 }, (_, i) => cycle[(Math.floor(i / 16) + i) % 4]!),
    [4, 16],
  );
}

function trainableNames(peft: PeftModel): string[] {
  return peft
    .getBaseModel()
    .namedParameters()
    .filter(([, p]) => p.requiresGrad)
    .map(([n]) => n)
    .sort();
}

describe("BitFit", () => {
  it("trains exactly the model's biases (or the named modules' ones)", () => {
    const peft = getPeftModel(gpt2(), BitFitConfig({ task_type: TaskType.CAUSAL_LM }));
    assert.deepEqual(trainableNames(peft), GPT2_BIASES.map(([n]) => n).sort());
    assert.equal(
      peft.getNbTrainableParameters()[0],
      GPT2_BIASES.reduce((s, [, n]) => s + n, 0),
    );
    const some = getPeftModel(gpt2(), BitFitConfig({ target_modules: ["c_attn", "c_fc"] }));
    assert.deepEqual(trainableNames(some), [
      "transformer.h.0.attn.c_attn.bias",
      "transformer.h.0.mlp.c_fc.bias",
      "transformer.h.1.attn.c_attn.bias",
      "transformer.h.1.mlp.c_fc.bias",
    ]);
    const excluded = getPeftModel(
      gpt2(),
      BitFitConfig({ exclude_modules: "transformer\\.h\\.\\d\\.ln_\\d|transformer\\.ln_f" }),
    );
    assert.equal(trainableNames(excluded).length, 8);
  });

  it("an SGD step moves the biases by −lr·gradient and leaves every other weight bit-identical", () => {
    const base = gpt2();
    const before = new Map(base.namedParameters().map(([n, p]) => [n, values(p)]));
    const peft = getPeftModel(base, BitFitConfig({}));
    peft.train();
    const grads = T.tidy(() => {
      const loss = peft.forward({ inputIds: IDS(), labels: IDS() }).loss!;
      loss.backward();
      return new Map(trainableNames(peft).map((n) => [n, values(peft.getBaseModel().getTensor(n).grad!)]));
    });
    new SGD(
      peft.parameters().filter((p) => p.requiresGrad),
      { lr: 0.5 },
    ).step();
    for (const [n, p] of base.namedParameters()) {
      const old = before.get(n)!;
      const g = grads.get(n);
      if (!g) assertSame(values(p), old, n);
      else
        assertSame(
          values(p),
          old.map((v, i) => Math.fround(v - Math.fround(0.5 * g[i]!))),
          n,
        );
    }
    assert.ok(
      [...grads.values()].some((g) => g.some((v) => v !== 0)),
      "the biases got gradients",
    );
  });

  it(
    "disabling gives the base model's logits; the saved file holds only the biases, under the " +
      "model's key names, and loads back",
    () => {
      const base = logits(gpt2());
      const peft = getPeftModel(gpt2(), BitFitConfig({}));
      trainToy(peft, 3);
      peft.eval();
      const trained = logits(peft);
      assert.ok(
        trained.some((v, i) => v !== base[i]),
        "training changed the logits",
      );
      peft.base_model.setAdaptersDisabled(true);
      assertSame(logits(peft), base, "disabled");
      const dir = dirs.make();
      peft.savePretrained(dir);
      peft.base_model.setAdaptersDisabled(false);
      assertSame(logits(peft), trained, "enabled again");
      const file = loadSafetensors(join(dir, "adapter_model.safetensors"));
      assert.deepEqual([...file.keys()].sort(), GPT2_BIASES.map(([n]) => n).sort());
      for (const [n, size] of GPT2_BIASES) assert.deepEqual(file.get(n)!.shape, [size], n);
      assert.equal(readJsonObject(join(dir, "adapter_config.json"))["peft_type"], "BITFIT");
      const loaded = PeftModel.fromPretrained(gpt2(), dir);
      assertSame(logits(loaded), trained, "reloaded");
      assertSame(logits(loaded.unload()), base, "unloaded");
    },
  );

  it("learns a toy task", () => {
    const peft = getPeftModel(gpt2(11, { initializer_range: 0.3 }), BitFitConfig({}));
    peft.train();
    const losses = trainToy(peft, 40, 0.05, cycleIds());
    assert.ok(losses[39]! < 0.5 * losses[0]!, `loss ${losses[0]} → ${losses[39]}`);
  });

  it("refuses a model without biases, unknown fields, a second adapter and a file for other parameters", () => {
    assert.throws(
      () => getPeftModel(llama(), BitFitConfig({})),
      (e: Error) => e instanceof ConfigError && /has no bias to train/.test(e.message),
    );
    assert.throws(() => configFromJson({ peft_type: "BITFIT", bias_only: true }, false), ConfigError);
    const peft = getPeftModel(gpt2(), BitFitConfig({}));
    assert.throws(() => peft.addAdapter("second", BitFitConfig({})), /one such adapter/);
    const dir = dirs.make();
    getPeftModel(gpt2(), BitFitConfig({ target_modules: ["c_fc"] })).savePretrained(dir);
    const other = getPeftModel(gpt2(), BitFitConfig({}));
    assert.throws(
      () => other.loadAdapterWeights(dir, "default"),
      (e: Error) => e instanceof CheckpointError && /missing: transformer/.test(e.message),
    );
  });
});

describe("Freeze", () => {
  it("trains the top N layers and the named modules", () => {
    const peft = getPeftModel(gpt2(), FreezeConfig({ num_trainable_layers: 1 }));
    assert.equal(peft.getNbTrainableParameters()[0], GPT2_LAYER);
    assert.ok(trainableNames(peft).every((n) => n.startsWith("transformer.h.1.")));
    const named = getPeftModel(gpt2(), FreezeConfig({ num_trainable_layers: 0, trainable_modules: ["ln_f"] }));
    assert.deepEqual(trainableNames(named), ["transformer.ln_f.bias", "transformer.ln_f.weight"]);
    // LLaMA: the top layer of model.layers (hand count: 4 projections 32·32, 32·16 twice; MLP 3·32·64; two RMSNorms of 32).
    const l = getPeftModel(llama(), FreezeConfig({ num_trainable_layers: 1, layers_pattern: "layers" }));
    assert.equal(l.getNbTrainableParameters()[0], 2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64 + 2 * 32);
    assert.ok(
      trainableNames(l).every((n) => n.startsWith("model.layers.1.")),
      LLAMA.model_type,
    );
  });

  it("saves only the trained layer, under the model's key names, and loads back", () => {
    const base = logits(gpt2());
    const peft = getPeftModel(gpt2(), FreezeConfig({ num_trainable_layers: 1 }));
    trainToy(peft, 2);
    peft.eval();
    const trained = logits(peft);
    const dir = dirs.make();
    peft.savePretrained(dir);
    const keys = [...loadSafetensors(join(dir, "adapter_model.safetensors")).keys()];
    assert.equal(keys.length, 12);
    assert.ok(keys.every((k) => k.startsWith("transformer.h.1.")));
    const loaded = PeftModel.fromPretrained(gpt2(), dir);
    assertSame(logits(loaded), trained, "reloaded");
    loaded.base_model.setAdaptersDisabled(true);
    assertSame(logits(loaded), base, "disabled");
  });

  it("learns a toy task", () => {
    const peft = getPeftModel(gpt2(11, { initializer_range: 0.3 }), FreezeConfig({ num_trainable_layers: 1 }));
    peft.train();
    const losses = trainToy(peft, 30, 0.01, cycleIds());
    assert.ok(losses[29]! < 0.5 * losses[0]!, `loss ${losses[0]} → ${losses[29]}`);
  });

  it("refuses configs that train nothing or name what the model lacks", () => {
    assert.throws(() => FreezeConfig({ num_trainable_layers: 0 }), /trains nothing/);
    assert.throws(() => getPeftModel(gpt2(), FreezeConfig({ num_trainable_layers: 3 })), /transformer\.h has 2 layers/);
    assert.throws(
      () => getPeftModel(gpt2(), FreezeConfig({ num_trainable_layers: 0, trainable_modules: ["nope"] })),
      /no module matches/,
    );
  });
});

describe("peft CLI with BitFit and Freeze", () => {
  it("`peft train` accepts each config, and `peft generate` uses the adapter it wrote", () => {
    const ws = cliWorkspace("peft-ts-selection-cli-", LLAMA);
    for (const [type, fields] of Object.entries({
      BITFIT: { target_modules: ["q_proj", "v_proj"] },
      FREEZE: { num_trainable_layers: 1 },
    })) {
      trainMethod(ws, type, fields);
      const gen = ws.run(
        "generate",
        "--model",
        "model",
        "--adapter",
        `out-${type}`,
        "--prompt",
        "say hello",
        "--max-new-tokens",
        "3",
      );
      assert.equal(gen.status, 0, `${type}: peft generate failed:\n${gen.stderr}`);
    }
  });
});
