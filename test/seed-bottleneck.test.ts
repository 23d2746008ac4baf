/**
 * Bottleneck adapters (AdapterHub's SeqBn = Pfeiffer, DoubleSeqBn = Houlsby): the adapter's forward against a float64
 * product written out here, the two placements on small modules by hand, AdapterHub's parameter names on the tiny
 * GPT-2 and LLaMA, identity at a zero up projection, learning, save/load and the CLI.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Conv1D, Module } from "../src/nn/index.js";
import {
  BottleneckAdapter,
  BottleneckSite,
  DoubleSeqBnConfig,
  PeftModel,
  SeqBnConfig,
  getPeftModel,
  configFromJson,
} from "../src/peft/index.js";
import { LayerOutputWithAdapters, SublayerOutputWithAdapters } from "../src/peft/tuners/bottleneck/layer.js";
import { loadSafetensors } from "../src/io/safetensors.js";
import { ConfigError } from "../src/errors.js";
import * as T from "../src/tensor/index.js";
import { assertClose, assertSame, mm, tempDirs, transposed, values } from "./helpers.js";
import { LLAMA, gpt2, llama, logits, trainToy } from "./tiny-models.js";
import { cliWorkspace, trainMethod } from "./cli-workspace.js";

const dirs = tempDirs("peft-ts-bottleneck-");
after(() => dirs.removeAll());

const D = [0.2, -0.5, 0.1, 0.4, -0.3, 0.6, 0.25, -0.1]; // adapter_down.0.weight [2, 4]
const DB = [0.05, -0.2];
const U = [0.3, -0.7, 0.5, 0.1, -0.4, 0.2, 0.8, -0.6]; // adapter_up.weight [4, 2]
const UB = [0.01, 0.02, -0.03, 0.04];

/** scaling · (U·relu(D·x + db) + ub) for each row of x [rows, 4], in float64. */
function adapterByHand(x: number[], rows: number, scaling: number): number[] {
  const down = Array.from(mm(x, transposed(D, 2, 4), rows, 4, 2), (v, i) => Math.max(0, v + DB[i % 2]!));
  return Array.from(mm(down, transposed(U, 4, 2), rows, 2, 4), (v, i) => scaling * (v + UB[i % 4]!));
}

function handAdapter(scaling: number): BottleneckAdapter {
  const a = new BottleneckAdapter(4, 2, "relu", "bert", scaling, 0);
  T.noGrad(() => {
    a.adapter_down.getTensor("0.weight").copy_(T.tensor(D, [2, 4]));
    a.adapter_down.getTensor("0.bias").copy_(T.tensor(DB, [2]));
    a.adapter_up.weight.copy_(T.tensor(U, [4, 2]));
    a.adapter_up.bias!.copy_(T.tensor(UB, [4]));
  });
  return a;
}

function siteWith(adapter: BottleneckAdapter): BottleneckSite {
  const site = new BottleneckSite();
  site.adapters.set("a", adapter);
  site.activeAdapters = ["a"];
  return site;
}

function cycleIds(): T.Tensor {
  const cycle = [5, 9, 13, 21];
  return T.tensor(
    Int32Array.from({ length: 4 * 16 }, (_, i) => cycle[(Math.floor(i / 16) + i) % 4]!),
    [4, 16],
  );
}

describe("bottleneck adapter math", () => {
  const x = [0.5, -1, 2, 0.3, -0.2, 0.7, -1.5, 1.1];

  it("A(x) = scaling · up(relu(down(x))); a site adds it to its input", () => {
    const adapter = handAdapter(0.5);
    assertClose(values(adapter.forward(T.tensor(x, [2, 4]))), adapterByHand(x, 2, 0.5), 1e-6);
    const site = siteWith(adapter);
    assertClose(
      values(site.apply(T.tensor(x, [2, 4]))),
      adapterByHand(x, 2, 0.5).map((v, i) => v + x[i]!),
      1e-6,
    );
    site.disabled = true;
    assertSame(values(site.apply(T.tensor(x, [2, 4]))), Float32Array.from(x), "disabled");
  });

  it("Houlsby: a sublayer output h becomes h + A(h); Pfeiffer: a layer output y becomes y + A(y)", () => {
    T.manualSeed(4);
    const proj = new Conv1D(4, 4);
    const wrapped = new SublayerOutputWithAdapters(proj, siteWith(handAdapter(1)));
    assert.deepEqual(
      wrapped
        .namedParameters()
        .map(([n]) => n)
        .slice(0, 2),
      ["weight", "bias"],
      "the projection's own names are kept",
    );
    const h = values(proj.forward(T.tensor(x, [2, 4])));
    assertClose(
      values(wrapped.forward(T.tensor(x, [2, 4]))),
      adapterByHand(h, 2, 1).map((v, i) => v + h[i]!),
      1e-5,
    );
    class Doubler extends Module {
      forward(t: T.Tensor): { out: T.Tensor; present: string } {
        return { out: T.mul(t, 2), present: "cache" };
      }
    }
    const layer = new LayerOutputWithAdapters(new Doubler() as never, siteWith(handAdapter(1)));
    const result = (layer.forward as (t: T.Tensor) => { out: T.Tensor; present: string })(T.tensor(x, [2, 4]));
    const y = x.map((v) => 2 * v);
    assertClose(
      values(result.out),
      adapterByHand(y, 2, 1).map((v, i) => v + y[i]!),
      1e-5,
    );
    assert.equal(result.present, "cache");
  });
});

describe("bottleneck adapters on a model", () => {
  it("take AdapterHub's parameter names and sizes (GPT-2 Pfeiffer, LLaMA Houlsby)", () => {
    const p = getPeftModel(gpt2(), SeqBnConfig({ reduction_factor: 4 }));
    const names = p
      .getBaseModel()
      .namedParameters()
      .filter(([, t]) => t.requiresGrad)
      .map(([n]) => n);
    assert.deepEqual(
      names.filter((n) => n.startsWith("transformer.h.0.")),
      [
        "transformer.h.0.output_adapters.adapters.default.adapter_down.0.weight",
        "transformer.h.0.output_adapters.adapters.default.adapter_down.0.bias",
        "transformer.h.0.output_adapters.adapters.default.adapter_up.weight",
        "transformer.h.0.output_adapters.adapters.default.adapter_up.bias",
      ],
    );
    // Width 32, bottleneck 32 / 4 = 8: 32·8 + 8 + 8·32 + 32 per layer, 2 layers.
    assert.equal(p.getNbTrainableParameters()[0], 2 * (32 * 8 + 8 + 8 * 32 + 32));
    assert.ok(
      p
        .getBaseModel()
        .namedParameters()
        .some(([n]) => n === "transformer.h.0.attn.c_attn.weight"),
      "the model's own names are unchanged",
    );
    const h = getPeftModel(llama(), DoubleSeqBnConfig({ reduction_factor: { default: 16, "1": 8 }, leave_out: [0] }));
    const hn = h
      .getBaseModel()
      .namedParameters()
      .filter(([, t]) => t.requiresGrad)
      .map(([n]) => n);
    assert.deepEqual(
      hn.filter((n) => n.endsWith("adapter_up.weight")),
      [
        "model.layers.1.attention_adapters.adapters.default.adapter_up.weight",
        "model.layers.1.output_adapters.adapters.default.adapter_up.weight",
      ],
    );
    assert.equal(h.getNbTrainableParameters()[0], 2 * (32 * 4 + 4 + 4 * 32 + 32));
    assert.ok(
      h
        .getBaseModel()
        .namedParameters()
        .some(([n]) => n === "model.layers.1.self_attn.o_proj.weight"),
    );
  });

  it("start as the identity with mam_adapter init; disabled and unloaded give the base logits", () => {
    const base = logits(gpt2());
    assertSame(logits(getPeftModel(gpt2(), SeqBnConfig({ init_weights: "mam_adapter" }))), base, "zero up projection");
    const p = getPeftModel(gpt2(), DoubleSeqBnConfig({}));
    p.eval();
    const adapted = logits(p);
    assert.ok(
      adapted.some((v, i) => v !== base[i]),
      "bert init changes the output",
    );
    p.base_model.setAdaptersDisabled(true);
    assertSame(logits(p), base, "disabled");
    p.base_model.setAdaptersDisabled(false);
    assertSame(logits(p), adapted, "enabled again");
    assertSame(logits(p.unload() as never), base, "unloaded");
  });

  it("learns a toy task and survives save/load with AdapterHub's key names", () => {
    for (const config of [SeqBnConfig({ reduction_factor: 4 }), DoubleSeqBnConfig({ reduction_factor: 4 })]) {
      const p = getPeftModel(gpt2(11, { initializer_range: 0.3 }), config);
      p.train();
      const losses = trainToy(p, 30, 0.01, cycleIds());
      assert.ok(losses[29]! < 0.5 * losses[0]!, `loss ${losses[0]} → ${losses[29]}`);
      p.eval();
      const trained = logits(p);
      const dir = dirs.make();
      p.savePretrained(dir);
      const keys = [...loadSafetensors(join(dir, "adapter_model.safetensors")).keys()];
      assert.equal(keys.length, config.mh_adapter ? 16 : 8);
      assert.ok(
        keys.every((k) =>
          /^transformer\.h\.\d\.(attention|output)_adapters\.adapters\.default\.adapter_(down\.0|up)\.(weight|bias)$/.test(
            k,
          ),
        ),
        keys[0],
      );
      const loaded = PeftModel.fromPretrained(gpt2(11, { initializer_range: 0.3 }), dir);
      assertSame(logits(loaded), trained, "reloaded");
    }
  });

  it("refuses placements and options it does not compute, by name", () => {
    assert.throws(
      () => SeqBnConfig({ mh_adapter: true }),
      /mh_adapter with original_ln_before true is not implemented/,
    );
    assert.throws(
      () => SeqBnConfig({ ln_after: true }),
      (e: Error) => e instanceof ConfigError && /ln_after/.test(e.message),
    );
    assert.throws(() => SeqBnConfig({ init_weights: "houlsby" }), /init_weights/);
    assert.throws(() => configFromJson({ peft_type: "BOTTLENECK", reduction_factr: 2 }, false), ConfigError);
    assert.throws(() => SeqBnConfig({ reduction_factor: { "1": 8 } }), /"default" entry/);
  });
});

describe("peft CLI with bottleneck adapters", () => {
  it("`peft train` accepts the config, and `peft generate` uses the adapter it wrote", () => {
    const ws = cliWorkspace("peft-ts-bottleneck-cli-", LLAMA);
    trainMethod(ws, "BOTTLENECK", {
      reduction_factor: 8,
      mh_adapter: true,
      original_ln_before: false,
      non_linearity: "swish",
    });
    const gen = ws.run(
      "generate",
      "--model",
      "model",
      "--adapter",
      "out-BOTTLENECK",
      "--prompt",
      "say hello",
      "--max-new-tokens",
      "3",
    );
    assert.equal(gen.status, 0, `peft generate failed:\n${gen.stderr}`);
  });
});
